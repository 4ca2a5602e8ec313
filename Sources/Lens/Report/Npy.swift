import Foundation

/// A NumPy .npy file (format 1.0, little-endian float32, C order) written piecewise:
/// the header first, the file sized once, then blocks written at their offsets, so a tensor
/// larger than memory streams straight to disk.
public final class NpyWriter {
    public let path: String
    public let shape: [Int]
    let fd: Int32
    let dataOffset: Int

    /// float16 instead of float32 (values rounded to nearest even).
    public let half: Bool
    var elementSize: Int { half ? 2 : 4 }

    public init(path: String, shape: [Int], half: Bool = false) throws {
        self.path = path
        self.shape = shape
        self.half = half
        var header = "{'descr': '\(half ? "<f2" : "<f4")', 'fortran_order': False, 'shape': ("
        header += shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",), }" : "), }")
        // Magic (6) + version (2) + header length (2) + header + padding + "\n": a multiple of 64.
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        let n = header.utf8.count
        bytes += [UInt8(n & 0xFF), UInt8(n >> 8)] + Array(header.utf8)
        dataOffset = bytes.count
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw OutputError.cannotWrite(path: path, reason: String(cString: strerror(errno))) }
        let total = dataOffset + shape.reduce(1, *) * (half ? 2 : 4)
        guard bytes.withUnsafeBytes({ pwrite(fd, $0.baseAddress, $0.count, 0) }) == bytes.count,
              ftruncate(fd, off_t(total)) == 0 else {
            let r = String(cString: strerror(errno))
            Foundation.close(fd)
            throw OutputError.cannotWrite(path: path, reason: r)
        }
    }

    /// Writes `count` floats starting at flat element index `element` (safe to call from
    /// several threads for different elements).
    public func write(_ p: UnsafePointer<Float>, count: Int, at element: Int) throws {
        if half {
            let h = (0..<count).map { Float16(p[$0]).bitPattern.littleEndian }
            try h.withUnsafeBytes { try put($0.baseAddress!, bytes: count * 2, at: element * 2) }
        } else {
            try put(UnsafeRawPointer(p), bytes: count * 4, at: element * 4)
        }
    }

    private func put(_ raw: UnsafeRawPointer, bytes: Int, at offset: Int) throws {
        var done = 0
        while done < bytes {
            let r = pwrite(fd, raw + done, bytes - done, off_t(dataOffset + offset + done))
            guard r > 0 else { throw OutputError.cannotWrite(path: path, reason: String(cString: strerror(errno))) }
            done += r
        }
    }

    public func close() throws {
        guard fsync(fd) == 0 || errno == EINVAL, Foundation.close(fd) == 0 else {
            throw OutputError.cannotWrite(path: path, reason: String(cString: strerror(errno)))
        }
    }
}
