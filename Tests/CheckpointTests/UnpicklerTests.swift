@testable import Checkpoint
import TestSupport
import VitLensCore
import XCTest

/// Builds pickle byte streams by hand, opcode by opcode.
struct PickleBytes {
    var b: [UInt8] = [0x80, 2]  // PROTO 2
    mutating func op(_ o: UInt8, _ rest: [UInt8] = []) { b.append(o); b += rest }
    mutating func unicode(_ s: String) { let u = Array(s.utf8); op(0x58, le(u.count, 4) + u) }
    mutating func shortUnicode(_ s: String) { let u = Array(s.utf8); op(0x8C, [UInt8(u.count)] + u) }
    mutating func global(_ m: String, _ n: String) { op(0x63, Array((m + "\n" + n + "\n").utf8)) }
    mutating func stop() { op(0x2E) }
}

func le(_ v: Int, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

func unpickle(_ p: PickleBytes) throws -> PickleValue {
    try p.b.withUnsafeBytes { buf in
        var u = Unpickler(path: "test.pkl", bytes: buf) {
            _, _, _, _ in throw CheckpointError.pickleRefused(path: "test.pkl", what: "no tensors here") }
        return try u.run()
    }
}

final class UnpicklerTests: XCTestCase {
    func testOpcodesAStateDictNeeds() throws {
        var p = PickleBytes()
        p.op(0x7D)                          // EMPTY_DICT
        p.op(0x71, [0])                     // BINPUT 0
        p.op(0x28)                          // MARK
        p.unicode("ints")
        p.op(0x28)                          // MARK
        p.op(0x4B, [7])                     // BININT1 7
        p.op(0x4D, le(300, 2))              // BININT2 300
        p.op(0x4A, le(-5, 4))               // BININT -5
        p.op(0x8A, [2, 0x00, 0xFF])         // LONG1 −256
        p.op(0x74)                          // TUPLE
        p.shortUnicode("float")
        p.op(0x47, [0x3F, 0xF8, 0, 0, 0, 0, 0, 0])  // BINFLOAT 1.5
        p.shortUnicode("flags")
        p.op(0x88); p.op(0x89); p.op(0x4E)  // NEWTRUE NEWFALSE NONE
        p.op(0x87)                          // TUPLE3
        p.shortUnicode("list")
        p.op(0x5D)                          // EMPTY_LIST
        p.op(0x71, [1])                     // BINPUT 1
        p.op(0x28); p.op(0x4B, [1]); p.op(0x4B, [2]); p.op(0x65)  // MARK 1 2 APPENDS
        p.op(0x4B, [3]); p.op(0x61)         // APPEND 3
        p.shortUnicode("again")
        p.op(0x68, [1])                     // BINGET 1 (the same list)
        p.shortUnicode("pair")
        p.op(0x29); p.op(0x4B, [9]); p.op(0x86)  // EMPTY_TUPLE, 9, TUPLE2
        p.op(0x75)                          // SETITEMS
        p.global("collections", "OrderedDict")
        p.op(0x29); p.op(0x52)              // REDUCE OrderedDict()
        p.op(0x94)                          // MEMOIZE
        p.shortUnicode("k"); p.op(0x4B, [4]); p.op(0x73)  // SETITEM
        p.op(0x7D); p.op(0x62)              // BUILD with a state dict (ignored)
        p.op(0x85)                          // TUPLE1
        p.op(0x30)                          // POP (the tuple) …
        p.stop()                            // … leaving the first dict
        let v = try unpickle(p)
        guard case let .dict(d) = v else { return XCTFail("not a dict: \(v)") }
        guard case let .tuple(ints)? = d.lookup("ints") else { return XCTFail("ints") }
        XCTAssertEqual(ints.map { v -> Int? in if case let .int(i) = v { return i }; return nil }, [7, 300, -5, -256])
        guard case let .float(f)? = d.lookup("float") else { return XCTFail("float") }
        XCTAssertEqual(f, 1.5)
        guard case let .list(l)? = d.lookup("list"),
            case let .list(l2)? = d.lookup("again") else { return XCTFail("list") }
        XCTAssertTrue(l === l2, "BINGET must return the memoised object itself")
        XCTAssertEqual(l.items.count, 3)
        guard case let .tuple(flags)? = d.lookup("flags"), flags.count == 3, case .bool(true) = flags[0],
            case .none = flags[2] else { return XCTFail("flags") }
    }

    func testRefusesGlobalsOutsideTheAllowlist() {
        for (m, n) in [
            ("os", "system"), ("posix", "system"), ("builtins", "eval"), ("subprocess", "Popen"), ("torch", "load")] {
            var p = PickleBytes()
            p.global(m, n)
            p.op(0x8C, [2] + Array("id".utf8)); p.op(0x85); p.op(0x52); p.stop()
            XCTAssertThrowsError(try unpickle(p)) { e in
                XCTAssertEqual(e as? CheckpointError, .pickleGlobalRefused(path: "test.pkl", name: "\(m).\(n)"))
                XCTAssertTrue("\(e)".contains("'\(m).\(n)'"), "\(e)")
            }
        }
        var p = PickleBytes()  // STACK_GLOBAL too
        p.shortUnicode("builtins"); p.shortUnicode("exec"); p.op(0x93); p.stop()
        XCTAssertThrowsError(try unpickle(p)) { e in XCTAssertTrue("\(e)".contains("builtins.exec"), "\(e)") }
    }

    func testRefusesReduceOfANonCallable() {
        var p = PickleBytes()
        p.global("torch", "FloatStorage")  // allowed as a storage type, never as a call
        p.op(0x29); p.op(0x52); p.stop()
        XCTAssertThrowsError(try unpickle(p)) {
            e in XCTAssertTrue("\(e)".contains("REDUCE of torch.FloatStorage is not allowed"), "\(e)") }
        var q = PickleBytes()
        q.op(0x4B, [1]); q.op(0x29); q.op(0x52); q.stop()  // REDUCE of an int
        XCTAssertThrowsError(try unpickle(q))
    }

    func testMalformedStreams() {
        var unknown = PickleBytes(); unknown.op(0x69); unknown.stop()  // INST: not supported
        XCTAssertThrowsError(try unpickle(unknown)) { e in XCTAssertTrue("\(e)".contains("opcode 0x69"), "\(e)") }
        var missingMemo = PickleBytes(); missingMemo.op(0x68, [5]); missingMemo.stop()
        XCTAssertThrowsError(try unpickle(missingMemo)) { e in XCTAssertTrue("\(e)".contains("memo"), "\(e)") }
        var truncated = PickleBytes(); truncated.op(0x58, le(1000, 4) + Array("short".utf8))
        XCTAssertThrowsError(try unpickle(truncated))
        var noStop = PickleBytes(); noStop.op(0x4B, [1])
        XCTAssertThrowsError(try unpickle(noStop))
        var underflow = PickleBytes(); underflow.op(0x73); underflow.stop()
        XCTAssertThrowsError(try unpickle(underflow))
        var noMark = PickleBytes(); noMark.op(0x74); noMark.stop()
        XCTAssertThrowsError(try unpickle(noMark))
    }

    func testDeepNestingIsBounded() {
        // More containers than the cap: refused before the stack or the nesting can grow further.
        var p = PickleBytes()
        for _ in 0..<(Unpickler.maxContainers + 1) { p.op(0x5D) }
        p.stop()
        XCTAssertThrowsError(try unpickle(p)) {
            e in XCTAssertTrue("\(e)".contains("more than 1000000 tuples, lists and dicts"), "\(e)") }
        // Plain values still hit the stack limit.
        var q = PickleBytes()
        for _ in 0..<(Unpickler.maxStack + 1) { q.op(0x4E) }
        q.stop()
        XCTAssertThrowsError(try unpickle(q)) { e in XCTAssertTrue("\(e)".contains("stack deeper"), "\(e)") }
    }

    /// 300,000 nested lists (each appended into the one below): built, then released on the
    /// loader's large-stack thread without overflowing it.
    func testDeeplyNestedValueIsReleasedSafely() throws {
        var p = PickleBytes()
        for _ in 0..<300_000 { p.op(0x5D) }
        for _ in 0..<299_999 { p.op(0x61) }
        p.stop()
        let depth = try runWithLargeStack(1 << 30) { () -> Int in
            guard case var .list(l) = try unpickle(p) else { return -1 }
            var d = 1
            while case let .list(inner)? = l.items.first { d += 1; l = inner }
            return d
        }
        XCTAssertEqual(depth, 300_000)
    }

    /// A list put inside itself (DUP, APPEND: found by libFuzzer under LeakSanitizer) is freed
    /// once the arena is cleared.
    func testSelfContainingListIsFreed() throws {
        var p = PickleBytes()
        p.op(0x5D); p.op(0x32); p.op(0x61); p.stop()  // EMPTY_LIST, DUP, APPEND
        weak var weakList: PickleList?
        try p.b.withUnsafeBytes { buf in
            var u = Unpickler(path: "cycle.pkl", bytes: buf) {
                _, _, _, _ in throw CheckpointError.pickleRefused(path: "cycle.pkl", what: "no tensors") }
            let v = try u.run()
            guard case let .list(l) = v,
                case let .list(inner)? = l.items.first else { return XCTFail("not a self-containing list") }
            XCTAssertTrue(l === inner)
            weakList = l
            u.arena.clear()
        }
        XCTAssertNil(weakList, "the cycle was not broken")
    }
}
