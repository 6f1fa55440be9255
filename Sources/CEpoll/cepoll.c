// Only the header matters (see include/cepoll.h); SwiftPM needs a source file for a C target.
#include "cepoll.h"
