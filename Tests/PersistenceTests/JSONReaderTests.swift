import AgentCore
import Foundation
import GRDB
import Testing

@testable import Persistence

@Suite("stored item JSON")
struct JSONReaderTests {
    static let documents: [String] = [
        #"{"a":1,"b":-2,"c":0.25,"d":1.5e-7,"e":1e+300,"f":123456789012345678901,"g":-9223372036854775808}"#,
        #"{"s":"plain","t":"quote \" backslash \\ slash \/ tab \t nl \n cr \r ctl \u0001 \b \f","u":"é ✓ \u00e9 \ud83d\ude00 😀"}"#,
        #"[true,false,null,[],{},[[{"x":[1,{"y":null}]}]]]"#,
        #"  { "spaced" : [ 1 , 2 ] , "nested" : { "k" : "v" } }  "#,
        #""""#,
        #"-0.0"#,
    ]

    @Test("reads writer output exactly as JSONValue.parse does, and any JSON to the same bytes")
    func sameAsAgentParser() throws {
        for text in Self.documents {
            let expected = try JSONValue.parse(text)
            // Any JSON: the same value once written (an integral "-0.0" may be .number here, .integer there).
            let parsed = try #require(JSONReader.parse(Data(text.utf8)), "\(text)")
            let written = JSONWriter.bytes(expected)
            #expect(JSONWriter.bytes(parsed) == written, "\(text)")
            // What the db stores (writer output): the very same value.
            #expect(JSONReader.parse(Data(written)) == expected, "\(text)")
        }
    }

    @Test("rejects what is not JSON")
    func rejects() {
        for text in [#"{"a":1"#, #"{"a" 1}"#, "[1,]x", #""\x""#, #""\ud800""#, "tru", "{\"a\":\"\u{1}\"}", "", "[1] [2]"] {
            #expect(JSONReader.parse(Data(text.utf8)) == nil, "\(text)")
        }
    }

    @Test("values of the wrong type (SQLite lets them in) are skipped, not a crash at every start")
    func wronglyTypedValues() async throws {
        try await withTempDir { dir in
            let path = dir.file("featbit.db")
            let (db, _) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            let store = DataStore(journal: db)
            store.apply(TestData.initial)
            db.close()
            let raw = try DatabaseQueue(path: path)
            try raw.write { db in
                try db.execute(sql: "UPDATE environments SET version = 'abc'")
                try db.execute(sql: "UPDATE store_state SET sequence = 'many'")
                try db.execute(sql: "UPDATE secrets SET project_key = X'FF' WHERE position = 0")
                try db.execute(sql: "INSERT INTO metadata (key, value) VALUES ('odd', X'FFFE')")
            }
            try raw.close()
            let (reopened, loaded) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            defer { reopened.close() }
            // The flags are all there; only the unreadable rows are gone.
            let env = try #require(loaded.snapshot().environments[TestData.envA])
            #expect(env.flags[TestData.flagId(1)] != nil)
            #expect(loaded.isInitialised)
        }
    }

    @Test("a tampered row is skipped and reported; a row in another spelling still loads")
    func tamperedRows() async throws {
        try await withTempDir { dir in
            let path = dir.file("featbit.db")
            let (db, _) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            let store = DataStore(journal: db)
            store.apply(TestData.initial)
            db.close()
            let respelled = #"{ "updatedAt" : "2023-11-14T22:13:20.002Z", "id" : "\#(TestData.flagId(2))", "envId" : "\#(TestData.envA)", "key" : "k2" }"#
            let raw = try DatabaseQueue(path: path)
            try raw.write { db in
                try db.execute(sql: "UPDATE items SET json = '{not json' WHERE id = ?", arguments: [TestData.flagId(1)])
                try db.execute(sql: "UPDATE items SET json = ? WHERE id = ?", arguments: [respelled, TestData.flagId(2)])
            }
            try raw.close()
            let logs = LogCapture()
            let (reopened, loaded) = try FeatBitDatabase.open(path: path, logger: logs.logger).requireReady()
            defer { reopened.close() }
            #expect(loaded.skippedItems == 1)
            #expect(logs.events("db-rows-skipped").count == 1)
            let env = try #require(loaded.snapshot().environments[TestData.envA])
            #expect(env.flags[TestData.flagId(1)] == nil)
            #expect(env.flags[TestData.flagId(2)]?.key == "k2")
            #expect(env.flags[TestData.flagId(3)] != nil)
        }
    }
}
