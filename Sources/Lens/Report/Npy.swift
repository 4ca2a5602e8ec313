import Foundation

/// A NumPy .npy file (format 1.0, little-endian float32, C order) written piecewise:
/// the header first, the file sized once, then blocks written at their offsets, so a tensor
/// larger than memory streams straight to disk.
public final class NpyWriter {
    public let path: String
    public let shape: [Int]
    let fd: Int32
    let dataOffset: Int

    public init(path: String, shape: [Int]) throws {
        self.path = path
        self.shape = shape
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': ("
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
        let total = dataOffset + shape.reduce(1, *) * 4
        guard bytes.withUnsafeBytes({ pwrite(fd, $0.baseAddress, $0.count, 0) }) == bytes.count,
              ftruncate(fd, off_t(total)) == 0 else {
            let r = String(cString: strerror(errno))
            Foundation.close(fd)
            throw OutputError.cannotWrite(path: path, reason: r)
        }
    }

    /// Writes `count` floats starting at flat element index `element`.
    public func write(_ p: UnsafePointer<Float>, count: Int, at element: Int) throws {
        var done = 0
        let bytes = count * 4
        while done < bytes {
            let r = pwrite(fd, UnsafeRawPointer(p) + done, bytes - done, off_t(dataOffset + element * 4 + done))
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
