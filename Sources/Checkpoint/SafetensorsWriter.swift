import Foundation
import VitLensCore

/// Writes float32 tensors as safetensors (the layout `Safetensors.read` checks): a u64
/// little-endian header length, the JSON header padded with spaces to a multiple of 8, then the
/// data in the order given. The file appears atomically (written beside it, then renamed), so a
/// failed run never leaves a half-written checkpoint.
public enum SafetensorsWriter {
    public struct Entry {
        public let name: String
        public let shape: [Int]
        public let data: UnsafePointer<Float>
        public init(name: String, shape: [Int], data: UnsafePointer<Float>) {
            self.name = name; self.shape = shape; self.data = data }
        var count: Int { shape.reduce(1, *) }
    }

    public enum DType: String, Sendable { case f32 = "F32", f16 = "F16" }

    public static func write(path: String, tensors: [Entry], metadata: [(String, String)], dtype: DType = .f32) throws {
        let width = dtype == .f32 ? 4 : 2
        var header = "{\"__metadata__\":{" + metadata.map { "\(quote($0.0)):\(quote($0.1))" }.joined(separator: ",")
            + "}"
        var offset = 0
        for t in tensors {
            let bytes = t.count * width
            let shape = t.shape.map(String.init).joined(separator: ",")
            header += ",\(quote(t.name)):{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(shape)],"
                + "\"data_offsets\":[\(offset),\(offset + bytes)]}"
            offset += bytes
        }
        header += "}"
        while header.utf8.count % 8 != 0 { header += " " }
        var out = Data(capacity: 8 + header.utf8.count + offset)
        var len = UInt64(header.utf8.count).littleEndian
        withUnsafeBytes(of: &len) { out.append(contentsOf: $0) }
        out.append(contentsOf: Array(header.utf8))
        for t in tensors {
            // Little-endian, as every platform vitlens runs on stores it.
            if dtype == .f32 {
                out.append(UnsafeBufferPointer(start: t.data, count: t.count))
            } else {
                let half = (0..<t.count).map { halfBits(t.data[$0]) }
                half.withUnsafeBufferPointer { out.append($0) }
            }
        }
        let dir = (path as NSString).deletingLastPathComponent
        let tmp = (dir.isEmpty ? "." : dir) + "/.\((path as NSString).lastPathComponent).vitlens-tmp-\(getpid())"
        do {
            try out.write(to: URL(fileURLWithPath: tmp))
        } catch {
            try? FileManager.default.removeItem(atPath: tmp)
            throw CheckpointError.cannotWrite(path: path, reason: (error as NSError).localizedDescription)
        }
        guard rename(tmp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: tmp)
            throw CheckpointError.cannotWrite(path: path, reason: reason)
        }
    }

    /// IEEE 754 binary16 bits of x, rounded to nearest even (overflow to ±inf, subnormals kept).
    static func halfBits(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        let sign = UInt16((b >> 16) & 0x8000)
        let exp = Int((b >> 23) & 0xFF), man = b & 0x7F_FFFF
        if exp == 0xFF { return sign | 0x7C00 | (man != 0 ? 0x200 : 0) }  // inf, NaN
        let e = exp - 127 + 15
        if e >= 31 { return sign | 0x7C00 }
        if e <= 0 {
            if e < -10 { return sign }
            let m = man | 0x80_0000, shift = UInt32(14 - e)
            var h = m >> shift
            let rem = m & ((1 << shift) - 1), halfway = UInt32(1) << (shift - 1)
            if rem > halfway || (rem == halfway && h & 1 == 1) { h += 1 }
            return sign | UInt16(h)
        }
        var h = UInt32(e) << 10 | man >> 13
        let rem = man & 0x1FFF
        if rem > 0x1000 || (rem == 0x1000 && h & 1 == 1) { h += 1 }  // may carry into the exponent: still correct
        return sign | UInt16(h)
    }

    static func quote(_ s: String) -> String { jsonQuoted(s) }
}
