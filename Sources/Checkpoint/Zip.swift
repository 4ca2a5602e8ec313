import VitLensCore

/// A minimal, strict reader of the zip archives torch.save writes (PKZIP, stored entries,
/// optionally ZIP64). Entries are located through the central directory and every offset is
/// checked; entries are handed out as byte ranges of the memory map, never copied.
struct ZipArchive {
    struct Entry {
        let name: String
        let method: UInt16
        let compressedSize: Int
        let size: Int
        let dataOffset: Int
    }

    let file: MappedFile
    private(set) var entries: [String: Entry] = [:]
    private(set) var order: [String] = []

    static func looksLikeZip(_ file: MappedFile) -> Bool {
        guard let b = file.bytes(at: 0, count: 4) else { return false }
        return b.loadUnaligned(as: UInt32.self).littleEndian == 0x0403_4b50
    }

    init(_ file: MappedFile) throws {
        self.file = file
        let path = file.path
        func u16(_ o: Int) throws -> Int {
            guard let b = file.bytes(at: o, count: 2) else {
                throw CheckpointError.truncated(path: path, what: "zip structure at offset \(o)") }
            return Int(b.loadUnaligned(as: UInt16.self).littleEndian)
        }
        func u32(_ o: Int) throws -> Int {
            guard let b = file.bytes(at: o, count: 4) else {
                throw CheckpointError.truncated(path: path, what: "zip structure at offset \(o)") }
            return Int(b.loadUnaligned(as: UInt32.self).littleEndian)
        }
        func u64(_ o: Int) throws -> Int {
            guard let b = file.bytes(at: o, count: 8) else {
                throw CheckpointError.truncated(path: path, what: "zip structure at offset \(o)") }
            let v = b.loadUnaligned(as: UInt64.self).littleEndian
            guard v <= UInt64(Int.max / 2) else {
                throw CheckpointError.malformed(path: path, what: "zip64 value \(v) at offset \(o) is absurd") }
            return Int(v)
        }

        // End of central directory: the last 22+ bytes, possibly followed by a comment.
        guard file.count >= 22 else { throw CheckpointError.truncated(path: path, what: "too short for a zip archive") }
        var eocd = -1
        var o = file.count - 22
        let lowest = max(0, file.count - 22 - 65535)
        while o >= lowest {
            if try u32(o) == 0x0605_4b50 { eocd = o; break }
            o -= 1
        }
        guard eocd >= 0 else {
            throw CheckpointError.truncated(
                path: path, what: "no zip end-of-central-directory record (the archive is cut short or corrupt)")
        }
        var total = try u16(eocd + 10)
        var cdSize = try u32(eocd + 12)
        var cdOffset = try u32(eocd + 16)
        if eocd >= 20, try u32(eocd - 20) == 0x0706_4b50 {
            let z = try u64(eocd - 20 + 8)
            guard try u32(z) == 0x0606_4b50 else {
                throw CheckpointError.malformed(
                    path: path, what: "zip64 end-of-central-directory record missing at offset \(z)")
            }
            total = try u64(z + 32)
            cdSize = try u64(z + 40)
            cdOffset = try u64(z + 48)
        }
        guard cdOffset <= file.count, cdSize <= file.count - cdOffset else {
            throw CheckpointError.malformed(
                path: path, what: "zip central directory (offset \(cdOffset), \(cdSize) bytes) lies outside the file")
        }
        guard total <= cdSize / 46 else {
            throw CheckpointError.malformed(
                path: path, what: "zip claims \(total) entries in a \(cdSize)-byte central directory")
        }
        var p = cdOffset
        for _ in 0..<total {
            guard try u32(p) == 0x0201_4b50 else {
                throw CheckpointError.malformed(path: path, what: "bad zip central directory entry at offset \(p)")
            }
            let method = UInt16(try u16(p + 10))
            var compressed = try u32(p + 20)
            var size = try u32(p + 24)
            let nameLen = try u16(p + 28), extraLen = try u16(p + 30), commentLen = try u16(p + 32)
            var local = try u32(p + 42)
            guard let nameBytes = file.bytes(at: p + 46, count: nameLen) else {
                throw CheckpointError.truncated(path: path, what: "zip entry name at offset \(p + 46)")
            }
            let name = String(decoding: nameBytes, as: UTF8.self)
            // ZIP64 extended information: 64-bit fields for those stored as 0xFFFFFFFF.
            var e = p + 46 + nameLen
            let extraEnd = e + extraLen
            while e + 4 <= extraEnd {
                let id = try u16(e), len = try u16(e + 2)
                if id == 0x0001 {
                    var q = e + 4
                    if size == 0xFFFF_FFFF { size = try u64(q); q += 8 }
                    if compressed == 0xFFFF_FFFF { compressed = try u64(q); q += 8 }
                    if local == 0xFFFF_FFFF { local = try u64(q); q += 8 }
                }
                e += 4 + len
            }
            guard try u32(local) == 0x0403_4b50 else {
                throw CheckpointError.malformed(
                    path: path, what: "zip entry \(name): no local header at offset \(local)")
            }
            let dataOffset = local + 30 + (try u16(local + 26)) + (try u16(local + 28))
            guard dataOffset <= file.count, compressed <= file.count - dataOffset else {
                throw CheckpointError.truncated(
                    path: path,
                    what: "zip entry \(name) (\(compressed) bytes at offset \(dataOffset)) runs past the end of the "
                    + "file")
            }
            if entries[name] != nil {
                throw CheckpointError.malformed(path: path, what: "zip entry \(name) appears twice")
            }
            entries[name] = Entry(
                name: name, method: method, compressedSize: compressed, size: size, dataOffset: dataOffset)
            order.append(name)
            p += 46 + nameLen + extraLen + commentLen
        }
    }

    /// The bytes of a stored entry. Compressed entries are refused: torch.save never writes
    /// them, and inflating would copy what we otherwise map.
    func data(_ name: String) throws -> (offset: Int, count: Int) {
        guard let e = entries[name] else {
            throw CheckpointError.malformed(path: file.path, what: "zip entry \(name) is missing")
        }
        guard e.method == 0 else {
            throw CheckpointError.unsupported(
                path: file.path,
                what: "zip entry \(name) is compressed (method \(e.method)); vitlens reads the uncompressed "
                + "archives torch.save writes — re-save it with torch.save, or re-zip with `zip -0`")
        }
        guard e.size == e.compressedSize else {
            throw CheckpointError.malformed(
                path: file.path,
                what: "stored zip entry \(name) has different sizes (\(e.compressedSize) vs \(e.size))")
        }
        return (e.dataOffset, e.size)
    }
}
