import Testing
@testable import AgentCore

@Suite("double.TryParse, invariant culture (spec §5.3)")
struct DotNetNumberTests {
    @Test("accepted", arguments: [
        ("22", 22.0), ("-5", -5.0), ("+3", 3.0), ("  5 ", 5.0), ("\t7\n", 7.0), ("1.5", 1.5), ("1.", 1.0),
        (".5", 0.5), ("-.5", -0.5), ("1e3", 1000.0), ("1E-2", 0.01), ("2.5e+1", 25.0), ("1,000", 1000.0),
        ("1,000.25", 1000.25), ("1,,0", 10.0), ("1,0", 10.0), ("007", 7.0), ("5\0\0", 5.0), ("5 \0", 5.0),
        ("Infinity", .infinity), ("-infinity", -.infinity), (" +INFINITY ", .infinity), ("1e400", .infinity),
        ("-1e400", -.infinity), ("1e-400", 0.0), ("1e99999999999", .infinity),
    ])
    func accepted(text: String, expected: Double) {
        #expect(DotNetNumber.parseDouble(text) == expected)
    }

    @Test("rejected", arguments: [
        "", " ", "abc", "1.000,5", ",5", "-,5", "1e", "1e+", "0x10", "1 000", "inf", "--1", "+-1", "1-", "(1)",
        "1.2.3", ".", "-", "e5", "5\0 ", "١٢", "1_000", "$5", "1,000.5,0",
    ])
    func rejected(text: String) {
        #expect(DotNetNumber.parseDouble(text) == nil)
    }

    @Test func nanSymbols() {
        for text in ["NaN", "nan", "-NaN", "+nan", " NaN "] {
            #expect(DotNetNumber.parseDouble(text)?.isNaN == true, "\(text)")
        }
    }
}
