import Foundation

/// A temporary file for arrays too big to keep resident (a similarity run's held vectors, each
/// layer's RDM ranks): written and read at byte offsets. It is unlinked as soon as it is made, so
/// nothing is left behind, even after a crash; the space returns when the object goes.
public final class ScratchFile {
    public let directory: String
    private let fd: Int32

    /// In `directory` (default: $TMPDIR, else /tmp).
    public init(directory: String = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") throws {
        self.directory = directory
        var template = Array((directory + "/vitlens-scratch-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw FileError.scratch(directory: directory, reason: String(cString: strerror(errno))) }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Writes `count` elements at byte `offset`.
    public func write<T>(_ values: UnsafePointer<T>, count: Int, at offset: Int) throws {
        var done = 0, bytes = count * MemoryLayout<T>.stride
        let raw = UnsafeRawPointer(values)
        while bytes > 0 {
            let n = pwrite(fd, raw + done, bytes, off_t(offset + done))
            guard n > 0 else { throw FileError.scratch(directory: directory, reason: String(cString: strerror(errno))) }
            done += n
            bytes -= n
        }
    }

    /// Reads `count` elements at byte `offset` into `out`.
    public func read<T>(into out: UnsafeMutablePointer<T>, count: Int, at offset: Int) throws {
        var done = 0, bytes = count * MemoryLayout<T>.stride
        let raw = UnsafeMutableRawPointer(out)
        while bytes > 0 {
            let n = pread(fd, raw + done, bytes, off_t(offset + done))
            guard n > 0 else {
                throw FileError.scratch(directory: directory, reason: n == 0 ? "read past its end"
                                        : String(cString: strerror(errno)))
            }
            done += n
            bytes -= n
        }
    }
}
