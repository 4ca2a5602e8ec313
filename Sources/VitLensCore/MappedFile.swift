import Foundation

public enum FileError: Error, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    case notARegularFile(path: String)
    /// A scratch file in `directory` could not be made, written or read.
    case scratch(directory: String, reason: String)

    public var description: String {
        switch self {
        case let .scratch(directory, reason): return "scratch file in \(directory): \(reason)"
        case let .cannotOpen(path, reason): return "\(path): cannot open (\(reason))"
        case let .notARegularFile(path): return "\(path): not a regular file"
        }
    }
}

/// A read-only memory map of a whole file. Every access goes through `bytes(at:count:)`,
/// which checks bounds, so a lying length or offset inside a file never reads past its end.
public final class MappedFile {
    public let path: String
    public let count: Int
    private let base: UnsafeMutableRawPointer?

    public init(path: String) throws {
        self.path = path
        // O_NONBLOCK: opening a FIFO (or a device) named like an image must not wait for a writer;
        // anything but a regular file is refused right after.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw FileError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw FileError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FileError.notARegularFile(path: path) }
        count = Int(st.st_size)
        if count == 0 {
            base = nil
            return
        }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw FileError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        base = p
    }

    /// Wraps bytes already in memory (tests, inflated archive entries).
    public init(copying bytes: [UInt8], name: String) {
        path = name
        count = bytes.count
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
        bytes.withUnsafeBytes { if let b = $0.baseAddress { p.copyMemory(from: b, byteCount: bytes.count) } }
        base = p
        owned = true
    }

    private var owned = false

    deinit {
        guard let base else { return }
        if owned { base.deallocate() } else { munmap(base, count) }
    }

    /// The whole file.
    public var all: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// `count` bytes at `offset`, or nil when any part of the range lies outside the file.
    public func bytes(at offset: Int, count n: Int) -> UnsafeRawBufferPointer? {
        guard offset >= 0, n >= 0, offset <= count, n <= count - offset else { return nil }
        return UnsafeRawBufferPointer(start: base.map { $0 + offset }, count: n)
    }

}
