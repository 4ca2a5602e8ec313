import CCrypto
import Foundation

/// SHA-256 through OpenSSL's libcrypto (Debian's libssl-dev; its assembly uses the SHA
/// extensions where the CPU has them). One hash needs no more: swift-crypto's BoringSSL took
/// most of a fresh clone's dependency build for it (docs/development.md, "Build time").
public enum Digest {
    /// SHA-256 of mapped bytes, 1 MiB at a time, each chunk's pages released after it is
    /// hashed: hashing a multi-GB checkpoint or feature file does not leave it resident.
    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> String {
        let h = Hasher()
        let chunk = 1 << 20
        var offset = 0
        while offset < bytes.count {
            let n = min(chunk, bytes.count - offset)
            h.update(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)]))
            release(bytes, offset..<(offset + n))
            offset += n
        }
        return h.finalize()
    }

    public static func sha256(_ text: String) -> String {
        let h = Hasher()
        Array(text.utf8).withUnsafeBytes { h.update($0) }
        return h.finalize()
    }

    /// One EVP digest context. libcrypto fails these calls only when out of memory or given a
    /// digest it lacks; SHA-256 is in every build, so a failure is a broken installation.
    final class Hasher {
        private let context: OpaquePointer
        init() {
            guard let c = EVP_MD_CTX_new(), EVP_DigestInit_ex(c, EVP_sha256(), nil) == 1 else {
                fatalError("OpenSSL's libcrypto cannot compute SHA-256 (EVP_DigestInit_ex failed)")
            }
            context = c
        }
        deinit { EVP_MD_CTX_free(context) }

        func update(_ bytes: UnsafeRawBufferPointer) {
            guard let base = bytes.baseAddress, bytes.count > 0 else { return }
            precondition(EVP_DigestUpdate(context, base, bytes.count) == 1, "EVP_DigestUpdate failed")
        }

        /// The digest as 64 lowercase hex digits.
        func finalize() -> String {
            var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
            var length: UInt32 = 0
            precondition(
                EVP_DigestFinal_ex(context, &digest, &length) == 1 && length == 32, "EVP_DigestFinal_ex failed")
            let hex = Array("0123456789abcdef".utf8)
            var out = [UInt8]()
            out.reserveCapacity(64)
            for b in digest[0..<32] { out.append(hex[Int(b >> 4)]); out.append(hex[Int(b & 15)]) }
            return String(decoding: out, as: UTF8.self)
        }
    }

    /// Tells the kernel the whole pages inside `range` of a read-only mapping are not needed
    /// now (they are read from the file again if they are).
    static func release(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) {
        guard let base = bytes.baseAddress else { return }
        let page = Int(getpagesize())
        let start = (Int(bitPattern: base) + range.lowerBound + page - 1) / page * page
        let end = (Int(bitPattern: base) + range.upperBound) / page * page
        if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED) }
    }
}
