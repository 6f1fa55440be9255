/// `double.TryParse(s, out var d)` of .NET under the invariant culture (the ELS containers' culture), i.e.
/// `NumberStyles.Float | NumberStyles.AllowThousands` with `.` as decimal point and `,` as group separator:
///
/// * leading and trailing white space (U+0009–U+000D, U+0020), then trailing NUL characters;
/// * an optional leading `+` or `-`;
/// * ASCII digits, with `,` group separators anywhere in the integer part once a digit has been seen;
/// * an optional `.` followed by digits (`"1."` and `".5"` are numbers, `"."` is not);
/// * an optional exponent `e`/`E`, optional sign, at least one digit;
/// * otherwise, after trimming white space, the symbols `Infinity`, `-Infinity`, `+Infinity`, `NaN`, `+NaN`, `-NaN`
///   in any letter case.
///
/// Out-of-range values become ±infinity (as .NET Core 3.0+ does), NaN is returned as NaN.
public enum DotNetNumber {
    public static func parseDouble(_ text: String) -> Double? {
        // Fast path: a plain literal (no white space, no group separators) goes straight to the Swift parser once
        // its shape has been validated (Swift alone would also accept "inf", "nan" and hexadecimal forms).
        let plain = Ordinal.withBytes(text) { isPlainLiteral($0) }
        if plain, let d = Double(text) { return d }
        return Ordinal.withBytes(text) { parse($0) }
    }

    /// `[+-]?digits[.digits][e[+-]digits]` with at least one mantissa digit, nothing else.
    private static func isPlainLiteral(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        let n = b.count
        var i = 0
        if i < n, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
        var digits = 0
        while i < n, isDigit(b[i]) { i += 1; digits += 1 }
        if i < n, b[i] == UInt8(ascii: ".") {
            i += 1
            while i < n, isDigit(b[i]) { i += 1; digits += 1 }
        }
        guard digits > 0 else { return false }
        if i < n, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            i += 1
            if i < n, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            let start = i
            while i < n, isDigit(b[i]) { i += 1 }
            guard i > start, i - start <= 6 else { return false }
        }
        return i == n
    }

    @inline(__always)
    private static func isWhite(_ c: UInt8) -> Bool { c == 0x20 || (c >= 0x09 && c <= 0x0D) }

    @inline(__always)
    private static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

    static func parse(_ b: UnsafeBufferPointer<UInt8>) -> Double? {
        let n = b.count
        var i = 0
        while i < n, isWhite(b[i]) { i += 1 }
        // The cleaned literal handed to the Swift parser: sign, digits without separators, point, exponent.
        var literal: [UInt8] = []
        literal.reserveCapacity(n)
        if i < n, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            literal.append(b[i])
            i += 1
        }
        var digits = 0
        while i < n {
            let c = b[i]
            if isDigit(c) {
                literal.append(c)
                digits += 1
            } else if c == UInt8(ascii: ","), digits > 0 {
                // group separator: accepted and dropped
            } else {
                break
            }
            i += 1
        }
        if i < n, b[i] == UInt8(ascii: ".") {
            literal.append(UInt8(ascii: "."))
            i += 1
            while i < n, isDigit(b[i]) {
                literal.append(b[i])
                digits += 1
                i += 1
            }
        }
        guard digits > 0 else { return parseSymbol(b) }
        if i < n, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            var j = i + 1
            var exponent: [UInt8] = [UInt8(ascii: "e")]
            if j < n, b[j] == UInt8(ascii: "+") || b[j] == UInt8(ascii: "-") {
                exponent.append(b[j])
                j += 1
            }
            let start = j
            while j < n, isDigit(b[j]) {
                exponent.append(b[j])
                j += 1
            }
            if j > start {
                literal.append(contentsOf: exponent)
                i = j
            }
            // else: the `e` is not part of the number; the trailing check below rejects it.
        }
        while i < n, isWhite(b[i]) { i += 1 }
        while i < n, b[i] == 0 { i += 1 }
        guard i == n else { return nil }
        // A huge exponent would make some parsers give up; clamp it (the value is 0 or ±inf either way).
        return Double(String(decoding: literal, as: UTF8.self)) ?? clampedExponent(literal)
    }

    private static func clampedExponent(_ literal: [UInt8]) -> Double? {
        guard let e = literal.firstIndex(of: UInt8(ascii: "e")) else { return nil }
        let mantissa = String(decoding: literal[..<e], as: UTF8.self)
        let negativeExponent = literal.count > e + 1 && literal[e + 1] == UInt8(ascii: "-")
        guard let m = Double(mantissa) else { return nil }
        if m == 0 { return m }
        if negativeExponent { return m < 0 ? -0.0 : 0.0 }
        return m < 0 ? -.infinity : .infinity
    }

    private static func parseSymbol(_ b: UnsafeBufferPointer<UInt8>) -> Double? {
        var text = String(decoding: b, as: UTF8.self)
        text = String(text.unicodeScalars.drop { $0.properties.isWhitespace })
        while let last = text.unicodeScalars.last, last.properties.isWhitespace || last == "\0" {
            text.unicodeScalars.removeLast()
        }
        switch asciiLowercased(text) {
        case "infinity", "+infinity": return .infinity
        case "-infinity": return -.infinity
        case "nan", "+nan", "-nan": return .nan
        default: return nil
        }
    }

    private static func asciiLowercased(_ s: String) -> String {
        String(decoding: s.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }, as: UTF8.self)
    }
}
