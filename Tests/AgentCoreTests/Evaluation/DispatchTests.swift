import Testing
@testable import AgentCore

@Suite("Dispatch (spec §5.4)")
struct DispatchTests {
    @Test("bucket vectors", arguments: [
        ("test-value", 0.14653629204258323),
        ("qKPKh1S3FolC", 0.9105919692665339),
        ("3eacb184-2d79-49df-9ea7-edd4f10e4c6f", 0.08994403155520558),
        ("return-10p-true3db19c81-e149-4b97-8a0d-79d34531fe59", 0.6181446979753673),
        ("exptreturn-10p-true3db19c81-e149-4b97-8a0d-79d34531fe59", 0.10480360919609666),
        ("my-flaguser-1", 0.3866185671649873),
    ])
    func bucketVector(key: String, expected: Double) {
        #expect(Evaluator.bucket(of: key) == expected)
    }

    @Test func bucketOfSplitKeyEqualsBucketOfConcatenation() {
        let flagKey = Array("return-10p-true".utf8), value = Array("3db19c81-e149-4b97-8a0d-79d34531fe59".utf8)
        let split = flagKey.withUnsafeBytes { k in value.withUnsafeBytes { v in DispatchKey(parts: [k, v]).bucket() } }
        #expect(split == 0.6181446979753673)
        let prefixed = flagKey.withUnsafeBytes { k in
            value.withUnsafeBytes { v in DispatchKey(parts: [k, v]).bucket(prefix: "expt") }
        }
        #expect(prefixed == 0.10480360919609666)
    }

    @Test func rolloutShortcutsAndClosedInterval() {
        // "everyone": lo 0 and hi within 1e-5 of 1, whatever the bucket
        #expect(Evaluator.isInRollout(key: "qKPKh1S3FolC", lo: 0, hi: 0.999995))
        #expect(Evaluator.isInRollout(key: "qKPKh1S3FolC", lo: 0, hi: 1))
        // not the shortcut: 0.9105… is outside [0, 0.9]
        #expect(!Evaluator.isInRollout(key: "qKPKh1S3FolC", lo: 0, hi: 0.9))
        // "no one"
        #expect(!Evaluator.isInRollout(key: "test-value", lo: 0, hi: 0))
        // closed interval on both ends
        let b = Evaluator.bucket(of: "test-value")
        #expect(Evaluator.isInRollout(key: "test-value", lo: b, hi: 0.5))
        #expect(Evaluator.isInRollout(key: "test-value", lo: 0.1, hi: b))
        #expect(!Evaluator.isInRollout(key: "test-value", lo: 0.1, hi: b.nextDown))
        #expect(!Evaluator.isInRollout(key: "test-value", lo: b.nextUp, hi: 0.9))
    }

    @Test func bucketIsAlwaysInUnitInterval() {
        for i in 0..<2000 {
            let b = Evaluator.bucket(of: "key-\(i)")
            #expect(b >= 0 && b <= 1)
        }
    }
}
