@testable import Checkpoint
import Foundation
import TestSupport
import VitLensCore
import XCTest

/// A seeded mutation loop over the binary readers (a fast stand-in for the libFuzzer targets):
/// thousands of damaged copies of real files must each load or fail with a typed error that
/// names the file — never crash, hang or read out of bounds (the readers are compiled with
/// bounds checks, so an out-of-bounds read traps and fails the test process).
struct Mutator {
    var rng: SplitMix
    init(state: UInt64) { rng = SplitMix(state: state) }
    mutating func next() -> UInt64 { rng.next() }
    mutating func below(_ n: Int) -> Int { rng.below(n) }

    /// One damaged copy: byte flips, interesting values, truncation, insertion or deletion,
    /// concentrated near `focus` (a header) half of the time.
    mutating func mutate(_ src: [UInt8], focus: Range<Int>? = nil) -> [UInt8] {
        var b = src
        let edits = 1 + below(4)
        for _ in 0..<edits {
            guard !b.isEmpty else { break }
            let at: Int
            if let focus, below(2) == 0,
                !focus.isEmpty { at = min(b.count - 1, focus.lowerBound + below(focus.count)) } else {
                at = below(b.count) }
            switch below(7) {
            case 0: b[at] ^= UInt8(1 << below(8))
            case 1: b[at] = [0, 0xFF, 0x7F, 0x80, 0x01][below(5)]
            case 2: b.removeSubrange(below(b.count)...)
            case 3: b.insert(contentsOf: (0..<(1 + below(16))).map { _ in UInt8(truncatingIfNeeded: next()) }, at: at)
            case 4: b.removeSubrange(at..<min(b.count, at + 1 + below(16)))
            case 5: // an absurd 32-bit little-endian length
                let v = [UInt32.max, 1 << 31, 0x7FFF_FFFF, 0][below(4)]
                for k in 0..<4 where at + k < b.count { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) }
            default: b[at] = UInt8(truncatingIfNeeded: next())
            }
        }
        return b
    }
}

/// Iterations multiply by VITLENS_FUZZ_SCALE (default 1) for longer local runs.
let fuzzScale = Int(ProcessInfo.processInfo.environment["VITLENS_FUZZ_SCALE"] ?? "") ?? 1

final class MutationTests: XCTestCase {
    func bytes(_ file: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.checkpoint(file)))) }

    /// Loads a candidate the way `vitlens` does, touching every tensor. A refusal must be a
    /// CheckpointError whose text names the file (what the CLI prints after `error:`).
    func exercise(_ b: [UInt8], name: String) -> Bool {
        do {
            let c = try CheckpointLoader.load(
                file: MappedFile(copying: b, name: name), displayPath: name, config: nil, folder: false)
            for (k, t) in c.tensors {
                do { _ = try t.floats(name: k) } catch { assertTyped(error, naming: k) }
            }
            return true
        } catch {
            assertTyped(error, naming: name)
            return false
        }
    }

    func assertTyped(_ error: Error, naming name: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(error is CheckpointError, "untyped error \(type(of: error)): \(error)", file: file, line: line)
        XCTAssertTrue("\(error)".contains(name), "the error does not name \(name): \(error)", file: file, line: line)
    }

    func testSafetensors() throws {
        let src = try bytes("tiny_f16.safetensors")
        let header = 8 + Int(src.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var m = Mutator(state: 11)
        var loaded = 0
        for _ in 0..<(1500 * fuzzScale) {
            if exercise(m.mutate(src, focus: 0..<header), name: "m.safetensors") { loaded += 1 } }
        XCTAssertGreaterThan(loaded, 0, "some mutations (in tensor data) still load")
    }

    func testTorchZip() throws {
        let src = try bytes("tiny_timm.pth")
        // The pickle and the central directory are where the structure is.
        var m = Mutator(state: 12)
        let pkl = 0..<min(src.count, 2048), tail = max(0, src.count - 1024)..<src.count
        var loaded = 0, refused = 0
        for i in 0..<(1500 * fuzzScale) {
            if exercise(m.mutate(src, focus: i % 2 == 0 ? pkl : tail), name: "m.pth") { loaded += 1 } else {
                refused += 1 }
        }
        let moco = try bytes("tiny_moco.pth.tar")
        for _ in 0..<(300 * fuzzScale) {
            if exercise(m.mutate(moco), name: "m.pth.tar") { loaded += 1 } else { refused += 1 }
        }
        // Both outcomes occur: damage in tensor data still loads, damage in the structure is refused.
        XCTAssertGreaterThan(loaded, 0)
        XCTAssertGreaterThan(refused, 0)
    }

    func testUnpicklerOnRandomAndMutatedStreams() throws {
        var m = Mutator(state: 13)
        let real = try bytes("tiny_timm.pth")
        let zip = try ZipArchive(MappedFile(copying: real, name: "x.pth"))
        let name = zip.order.first { $0.hasSuffix("data.pkl") }!
        let (o, n) = try zip.data(name)
        let pkl = Array(real[o..<(o + n)])
        // Every stream — random bytes, or a damaged copy of a real pickle — either unpickles to a
        // value or is refused with a CheckpointError naming the stream; never a crash or a hang.
        var parsed = 0, refused = 0
        for i in 0..<(2000 * fuzzScale) {
            let b = i % 4 == 0 ? (0..<(1 + m.below(64))).map { _ in UInt8(truncatingIfNeeded: m.next()) }
                : m.mutate(pkl)
            b.withUnsafeBytes { buf in
                var u = Unpickler(path: "m.pkl", bytes: buf) { _, _, _, _ in RawTensor(shape: [1], floats: [0]) }
                do {
                    _ = try u.run()
                    parsed += 1
                } catch {
                    assertTyped(error, naming: "m.pkl")
                    refused += 1
                }
            }
        }
        XCTAssertGreaterThan(parsed, 0, "some damaged pickles still parse")
        XCTAssertGreaterThan(refused, 0)
    }
}

extension MutationTests {
    /// The .npy reader of features and attention from elsewhere: damaged copies of real arrays
    /// (float32 and float16) load or are refused; whatever loads is read whole.
    func testNpy() throws {
        let f32 = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.golden("maps_tiny_cls.npy"))))
        // The same header as float16 (a shorter data block).
        var f16 = f32
        if let r = f16.firstRange(of: Array("'<f4'".utf8)) { f16.replaceSubrange(r, with: Array("'<f2'".utf8)) }
        f16.removeLast((f16.count - 128) / 2)
        var m = Mutator(state: 14), loaded = 0
        for i in 0..<(3000 * fuzzScale) {
            let b = m.mutate(i % 2 == 0 ? f32 : f16, focus: 0..<128)
            do {
                let a = try NpyFile(file: MappedFile(copying: b, name: "m.npy"), path: "m.npy")
                guard a.count <= 1 << 20 else { continue }
                var out = [Float](repeating: 0, count: a.count)
                try out.withUnsafeMutableBufferPointer { try a.read(0, a.count, into: $0.baseAddress!) }
                loaded += 1
            } catch {
                XCTAssertTrue("\(error)".hasPrefix("m.npy: "), "\(error)")
            }
        }
        XCTAssertGreaterThan(loaded, 0, "some mutations (in the data) still load")
    }

    /// Headers that lie, each refused with its reason.
    func testNpyHeadersThatLie() throws {
        func npy(_ dict: String, data: Int = 64) -> [UInt8] {
            var h = Array(dict.utf8)
            h += [UInt8](repeating: 0x20, count: (64 - (10 + h.count + 1) % 64) % 64) + [0x0A]
            return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(h.count & 0xFF), UInt8(h.count >> 8)] + h
                + [UInt8](repeating: 0, count: data)
        }
        let cases: [(String, String)] = [
            ("{'descr': '<f4', 'fortran_order': True, 'shape': (4, 4), }", "Fortran-order"),
            ("{'descr': '|O', 'fortran_order': False, 'shape': (4,), }", "object arrays"),
            ("{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", "dtype '>f4' is not supported"),
            ("{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }", "dtype '<f8'"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807, 4), }", "overflows"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (4000000000, 4000000000), }", "overflows"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (-4, 4), }", "malformed shape"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (100, 100), }",
                "needs 40000 bytes of data, the file holds 64"),
            ("{'descr': '<f4', 'shape': (4,), }", "lacks descr, fortran_order or shape"),
            ("{'descr': '<f4', 'descr': '<f2', 'fortran_order': False, 'shape': (4,), }", "names 'descr' twice"),
            ("['descr', '<f4']", "not a dict"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (4, x), }", "malformed shape"),
        ]
        for (dict, says) in cases {
            XCTAssertThrowsError(
                try NpyFile(file: MappedFile(copying: npy(dict), name: "h.npy"), path: "h.npy"), dict) { e in
                XCTAssertTrue("\(e)".contains(says), "\(dict): \(e)")
            }
        }
        var long = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }")
        long[8] = 0xFF; long[9] = 0xFF
        XCTAssertThrowsError(try NpyFile(file: MappedFile(copying: long, name: "h.npy"), path: "h.npy")) {
            XCTAssertTrue("\($0)".contains("runs past the end")) }
        let ok = try NpyFile(
            file: MappedFile(
            copying: npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4), }"), name: "h.npy"), path: "h.npy")
        XCTAssertEqual(ok.shape, [4, 4])
        let scalar = try NpyFile(
            file: MappedFile(copying: npy("{'descr': '<f2', 'fortran_order': False, 'shape': (), }"), name: "h.npy"),
            path: "h.npy")
        XCTAssertEqual(scalar.shape, [])
        XCTAssertEqual(scalar.count, 1)
    }
}
