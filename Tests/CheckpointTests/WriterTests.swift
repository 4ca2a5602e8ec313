@testable import Checkpoint
import Foundation
import TestSupport
import VitLensCore
import XCTest

final class SafetensorsWriterTests: XCTestCase {
    /// float32 → binary16 against Swift's own Float16 conversion (round to nearest even), over
    /// normal, subnormal, overflowing and special values.
    func testHalfConversionMatchesFloat16() {
        #if !(os(macOS) && arch(x86_64))
        var rng = SplitMix64(seed: 3)
        var values: [Float] = [
            0, -0, 1, -1, 65504, 65519, 65520, 1e6, -1e6, 6.1e-5, 5.96e-8, 2.98e-8, 1e-9, .infinity, -.infinity,
                               Float(bitPattern: 0x3F80_1000), Float(bitPattern: 0x3F80_3000),
                                   Float(bitPattern: 0x3380_0000)]
        for _ in 0..<200_000 {
            values.append(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())))
        }
        var bad = 0
        for v in values where !v.isNaN {
            if SafetensorsWriter.halfBits(v) != Float16(v).bitPattern {
                bad += 1; if bad < 5 {
                print("half(\(v)): \(SafetensorsWriter.halfBits(v)) vs \(Float16(v).bitPattern)") } }
        }
        XCTAssertEqual(bad, 0)
        XCTAssertEqual(SafetensorsWriter.halfBits(.nan) & 0x7C00, 0x7C00)
        XCTAssertNotEqual(SafetensorsWriter.halfBits(.nan) & 0x3FF, 0)
        #endif
    }

    /// Written files read back through the strict reader, in both dtypes, with metadata.
    func testRoundTrip() throws {
        let dir = NSTemporaryDirectory() + "vitlens-writer-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = Tensor(shape: [2, 3], values: [1, -2, 3.5, 0.25, 1e-3, 7]),
            b = Tensor(shape: [5], values: [0, 1, 2, 3, 4])
        for dtype in [SafetensorsWriter.DType.f32, .f16] {
            let path = dir + "/t-\(dtype.rawValue).safetensors"
            try SafetensorsWriter.write(
                path: path,
                tensors: [
                .init(name: "a.weight", shape: [2, 3], data: a.data), .init(name: "b\"q", shape: [5], data: b.data)],
                                        metadata: [("num_heads", "3"), ("note", "quote \" and newline \n")],
                                            dtype: dtype)
            let file = try MappedFile(path: path)
            let (tensors, meta) = try Safetensors.read(file)
            XCTAssertEqual(meta["num_heads"], "3")
            XCTAssertEqual(meta["note"], "quote \" and newline \n")
            XCTAssertEqual(tensors["a.weight"]?.shape, [2, 3])
            XCTAssertEqual(tensors["b\"q"]?.shape, [5])
            let header = file.bytes(at: 0, count: 8)!.loadUnaligned(as: UInt64.self)
            XCTAssertEqual(header % 8, 0, "header padded to 8 bytes")
        }
        XCTAssertThrowsError(
            try SafetensorsWriter.write(path: dir + "/missing/x.safetensors", tensors: [], metadata: [])) { e in
            XCTAssertTrue("\(e)".contains("missing/x.safetensors"), "\(e)")
        }
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains("vitlens-tmp") }, [])
    }
}
