// epoll for bench-client's raw sockets: Swift's Glibc module does not export <sys/epoll.h>.
#pragma once
#include <sys/epoll.h>
