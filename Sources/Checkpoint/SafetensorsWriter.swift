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
        public init(name: String, shape: [Int], data: UnsafePointer<Float>) { self.name = name; self.shape = shape; self.data = data }
        var count: Int { shape.reduce(1, *) }
    }

    public static func write(path: String, tensors: [Entry], metadata: [(String, String)]) throws {
        var header = "{\"__metadata__\":{" + metadata.map { "\(quote($0.0)):\(quote($0.1))" }.joined(separator: ",") + "}"
        var offset = 0
        for t in tensors {
            let bytes = t.count * 4
            header += ",\(quote(t.name)):{\"dtype\":\"F32\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}"
            offset += bytes
        }
        header += "}"
        while header.utf8.count % 8 != 0 { header += " " }
        var out = Data(capacity: 8 + header.utf8.count + offset)
        var len = UInt64(header.utf8.count).littleEndian
        withUnsafeBytes(of: &len) { out.append(contentsOf: $0) }
        out.append(contentsOf: Array(header.utf8))
        for t in tensors {
            // Little-endian float32, as every platform vitlens runs on stores it.
            out.append(UnsafeBufferPointer(start: t.data, count: t.count))
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

    static func quote(_ s: String) -> String {
        var o = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": o += "\\\""
            case "\\": o += "\\\\"
            default: if u.value < 0x20 { o += String(format: "\\u%04x", u.value) } else { o.unicodeScalars.append(u) }
            }
        }
        return o + "\""
    }
}
