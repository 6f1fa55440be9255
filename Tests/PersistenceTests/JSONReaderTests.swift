import AgentCore
import Foundation
import GRDB
import Testing

@testable import Persistence

@Suite("stored item JSON")
struct JSONReaderTests {
    /// Documents and the values they are, written out by hand: the reference the reader is held to (not the
    /// reader itself, which `JSONValue.parse` is).
    static let documents: [(String, JSONValue)] = [
        (#"{"a":1,"b":-2,"c":0.25,"d":1.5e-7,"e":1e+300,"f":123456789012345678901,"g":-9223372036854775808,"h":1.0,"i":1e2}"#,
         .object(["a": .integer(1), "b": .integer(-2), "c": .number(0.25), "d": .number(1.5e-7), "e": .number(1e300),
                  "f": .number(123456789012345678901), "g": .integer(Int64.min), "h": .integer(1), "i": .integer(100)])),
        (#"{"s":"plain","t":"quote \" backslash \\ slash \/ tab \t nl \n cr \r ctl \u0001 \b \f","u":"é ✓ \u00e9 \ud83d\ude00 😀"}"#,
         .object(["s": .string("plain"),
                  "t": .string("quote \" backslash \\ slash / tab \t nl \n cr \r ctl \u{01} \u{08} \u{0C}"),
                  "u": .string("é ✓ é 😀 😀")])),
        (#"[true,false,null,[],{},[[{"x":[1,{"y":null}]}]]]"#,
         .array([.bool(true), .bool(false), .null, .array([]), .object([:]),
                 .array([.array([.object(["x": .array([.integer(1), .object(["y": .null])])])])])])),
        (#"  { "spaced" : [ 1 , 2 ] , "nested" : { "k" : "v" } }  "#,
         .object(["spaced": .array([.integer(1), .integer(2)]), "nested": .object(["k": .string("v")])])),
        (#""""#, .string("")),
        (#"-0.0"#, .integer(0)),
        (#"{"k":1,"k":2}"#, .object(["k": .integer(1)])),  // the first of repeated keys counts
    ]

    @Test("reads each document as the value it is, and what the writer wrote back to the same value")
    func readsDocumentsAsTheirValues() throws {
        for (text, expected) in Self.documents {
            #expect(JSONReader.parse(Data(text.utf8)) == expected, "\(text)")
            #expect(try JSONValue.parse(text) == expected, "\(text)")
            // What the db stores (writer output) reads back as the same value.
            #expect(JSONReader.parse(Data(JSONWriter.bytes(expected))) == expected, "\(text)")
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
