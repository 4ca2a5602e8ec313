import Foundation
import VitLensCore

/// safetensors: u64 little-endian header length, a JSON header
/// `{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`,
/// then the data. Offsets are relative to the end of the header. Every length, offset and
/// size is checked against the file before a byte of tensor data is touched.
enum Safetensors {
    static let maxHeader = 100 << 20

    static func read(_ file: MappedFile) throws -> (tensors: [String: RawTensor], metadata: [String: String]) {
        let path = file.path
        guard let lenBytes = file.bytes(at: 0, count: 8) else {
            throw CheckpointError.truncated(path: path, what: "file shorter than the 8-byte safetensors header length")
        }
        let headerLen = lenBytes.loadUnaligned(as: UInt64.self).littleEndian
        guard headerLen <= UInt64(maxHeader) else {
            throw CheckpointError.malformed(
                path: path, what: "safetensors header length \(headerLen) is absurd (limit \(maxHeader))")
        }
        guard let header = file.bytes(at: 8, count: Int(headerLen)) else {
            throw CheckpointError.truncated(
                path: path,
                what: "safetensors header of \(headerLen) bytes runs past the end of the file (\(file.count) bytes)")
        }
        let dataStart = 8 + Int(headerLen)
        let dataSize = file.count - dataStart
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(header), options: [])
        } catch {
            throw CheckpointError.malformed(path: path, what: "safetensors header is not valid JSON")
        }
        guard let top = json as? [String: Any] else {
            throw CheckpointError.malformed(path: path, what: "safetensors header is not a JSON object")
        }
        // JSONSerialization keeps one of two equal keys silently; a repeated tensor name would
        // make the file mean two things, so it is refused by name.
        if let dup = duplicateTopLevelKey(Array(header)) {
            throw CheckpointError.malformed(path: path, what: "safetensors header names tensor \(dup) twice")
        }
        var metadata: [String: String] = [:]
        var tensors: [String: RawTensor] = [:]
        var ranges: [(Int, Int, String)] = []
        for (name, value) in top {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else {
                    throw CheckpointError.malformed(path: path, what: "__metadata__ is not an object")
                }
                for (k, v) in m { metadata[k] = (v as? String) ?? "\(v)" }
                continue
            }
            guard let entry = value as? [String: Any],
                  let dtypeName = entry["dtype"] as? String,
                  let shapeAny = entry["shape"] as? [Any],
                  let offsAny = entry["data_offsets"] as? [Any], offsAny.count == 2 else {
                throw CheckpointError.malformed(
                    path: path, what: "tensor \(name): entry needs dtype, shape and two data_offsets")
            }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw CheckpointError.unknownDType(path: path, tensor: name, dtype: dtypeName)
            }
            let shape = try shapeAny.map { v -> Int in
                guard let n = exactInt(v), n >= 0 else {
                    throw CheckpointError.malformed(
                        path: path, what: "tensor \(name): shape entry \(v) is not a non-negative integer")
                }
                return n
            }
            guard let begin = exactInt(offsAny[0]), let end = exactInt(offsAny[1]), begin >= 0, end >= begin else {
                throw CheckpointError.tensorOutOfRange(
                    path: path, tensor: name, what: "data_offsets \(offsAny) are not an increasing pair of integers")
            }
            guard end <= dataSize else {
                throw CheckpointError.tensorOutOfRange(
                    path: path, tensor: name,
                    what: "data_offsets [\(begin), \(end)] run past the data (\(dataSize) bytes)")
            }
            guard let n = checkedProduct(shape), let bytes = checkedProduct([n, dtype.size]),
                bytes == end - begin else {
                throw CheckpointError.tensorOutOfRange(
                    path: path, tensor: name,
                    what: "data_offsets [\(begin), \(end)] hold \(end - begin) bytes, but \(dtypeName) "
                    + "\(shapeString(shape)) needs "
                    + "\(checkedProduct(shape).map { String($0 * dtype.size) } ?? "an overflowing number of")")
            }
            tensors[name] = RawTensor(dtype: dtype, shape: shape, file: file, offset: dataStart + begin)
            if end > begin { ranges.append((begin, end, name)) }
        }
        ranges.sort { $0.0 < $1.0 }
        for i in ranges.indices.dropFirst() where ranges[i].0 < ranges[i - 1].1 {
            throw CheckpointError.tensorOutOfRange(
                path: path, tensor: ranges[i].2, what: "data overlaps tensor \(ranges[i - 1].2)")
        }
        return (tensors, metadata)
    }

    /// The first key that appears twice in the top-level object of (already valid) JSON text.
    static func duplicateTopLevelKey(_ b: [UInt8]) -> String? {
        var depth = 0, i = 0, seen = Set<String>()
        var expectKey = false
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                // A string: scan to its closing quote, keeping escapes as written (equal keys are
                // equal texts in practice; JSONSerialization has already checked the syntax).
                var j = i + 1
                while j < b.count && b[j] != UInt8(ascii: "\"") { j += b[j] == UInt8(ascii: "\\") ? 2 : 1 }
                if depth == 1 && expectKey {
                    let key = String(decoding: b[(i + 1)..<min(j, b.count)], as: UTF8.self)
                    if !seen.insert(key).inserted { return key }
                    expectKey = false
                }
                i = j + 1
                continue
            }
            switch c {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                if depth == 1 && c == UInt8(ascii: "{") { expectKey = true }
            case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
            case UInt8(ascii: ","): if depth == 1 { expectKey = true }
            default: break
            }
            i += 1
        }
        return nil
    }

    /// An integer from JSON (NSNumber on Linux), refusing fractions and booleans.
    static func exactInt(_ v: Any) -> Int? {
        if let i = v as? Int { return i }
        if let d = v as? Double, d == d.rounded(), abs(d) < 9.0e15 { return Int(d) }
        return nil
    }
}
