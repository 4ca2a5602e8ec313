@testable import Checkpoint
import TestSupport
import VitLensCore
import XCTest

func safetensorsFile(header: String, data: [UInt8], headerLength: UInt64? = nil) -> MappedFile {
    let h = Array(header.utf8)
    var bytes = le(Int(truncatingIfNeeded: headerLength ?? UInt64(h.count)), 8) + h + data
    if headerLength == nil { bytes = le(h.count, 8) + h + data }
    return MappedFile(copying: bytes, name: "t.safetensors")
}

final class SafetensorsTests: XCTestCase {
    let four = [UInt8](repeating: 0, count: 16)

    func testReadsAValidFile() throws {
        let f = safetensorsFile(
            header: #"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"__metadata__":{"num_heads":"3"}}"#,
            data: [0, 0, 128, 63] + [UInt8](repeating: 0, count: 12))
        let (t, m) = try Safetensors.read(f)
        XCTAssertEqual(m["num_heads"], "3")
        XCTAssertEqual(t["a"]?.shape, [2, 2])
        XCTAssertEqual(try t["a"]!.floats(name: "a"), [1, 0, 0, 0])
    }

    func assertRefused(_ f: MappedFile, _ needle: String, line: UInt = #line) {
        XCTAssertThrowsError(try Safetensors.read(f), line: line) { e in
            XCTAssertTrue("\(e)".contains(needle), "'\(e)' should mention '\(needle)'", line: line)
            XCTAssertTrue("\(e)".hasPrefix("t.safetensors"), "names the file: \(e)", line: line)
        }
    }

    func testBoundsChecks() {
        assertRefused(MappedFile(copying: [1, 2, 3], name: "t.safetensors"), "shorter than the 8-byte")
        assertRefused(safetensorsFile(header: "{}", data: [], headerLength: 1 << 60), "absurd")
        assertRefused(safetensorsFile(header: "{}", data: [], headerLength: 5000), "runs past the end")
        assertRefused(safetensorsFile(header: "{not json", data: []), "not valid JSON")
        assertRefused(safetensorsFile(header: "[1,2]", data: []), "not a JSON object")
        assertRefused(
            safetensorsFile(header: #"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,32]}}"#, data: four),
            "run past the data")
        assertRefused(
            safetensorsFile(header: #"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}}"#, data: four),
            "needs 24")
        assertRefused(
            safetensorsFile(header: #"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[8,4]}}"#, data: four),
            "increasing")
        assertRefused(
            safetensorsFile(header: #"{"a":{"dtype":"Q4","shape":[2,2],"data_offsets":[0,16]}}"#, data: four),
            "unknown dtype Q4")
        assertRefused(
            safetensorsFile(header: #"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,16]}}"#, data: four),
            "non-negative")
        assertRefused(
            safetensorsFile(
            header: #"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,16]}}"#, data: four),
            "overflowing")
        assertRefused(
            safetensorsFile(
            header: #"{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"#
                + #""b":{"dtype":"F16","shape":[4],"data_offsets":[4,12]}}"#, data: four), "overlaps")
        assertRefused(safetensorsFile(header: #"{"a":{"dtype":"F32","shape":[4]}}"#, data: four), "data_offsets")
        // The same tensor name twice (JSON parsers keep one silently): refused by name.
        assertRefused(
            safetensorsFile(
            header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"w":"x"},"#
                + #""w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, data: four),
                      "names tensor w twice")
        // Equal names nested deeper, or a key text inside a string value, are not duplicates.
        XCTAssertNil(Safetensors.duplicateTopLevelKey(Array(#"{"a":{"a":1,"b":[{"a":2}]},"b":"\",\"a\":"}"#.utf8)))
        XCTAssertEqual(Safetensors.duplicateTopLevelKey(Array(#"{"a\"b":1,"c":{"x":1},"a\"b":2}"#.utf8)), #"a\"b"#)
    }

    func testHalfAndBFloat16Conversion() throws {
        // 1.0 and −2.0 in F16 (0x3C00, 0xC000) and BF16 (0x3F80, 0xC000).
        let f16 = safetensorsFile(
            header: #"{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#, data: [0x00, 0x3C, 0x00, 0xC0])
        XCTAssertEqual(try Safetensors.read(f16).tensors["a"]!.floats(name: "a"), [1, -2])
        let bf16 = safetensorsFile(
            header: #"{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#, data: [0x80, 0x3F, 0x00, 0xC0])
        XCTAssertEqual(try Safetensors.read(bf16).tensors["a"]!.floats(name: "a"), [1, -2])
    }
}
