import VitLensCore

/// torch.save's zip format: `<root>/data.pkl` (the pickled object), `<root>/data/<key>`
/// (one stored entry per storage, 64-byte aligned), `<root>/byteorder`, `<root>/version`.
enum TorchArchive {
    /// Unpickles the archive's data.pkl and hands the result to `use`; afterwards every container
    /// it created is emptied (see PickleArena), whether `use` returned or threw.
    static func read<T>(_ file: MappedFile, _ use: (PickleValue) throws -> T) throws -> T {
        let path = file.path
        let zip = try ZipArchive(file)
        guard let pkl = zip.order.first(where: { $0 == "data.pkl" || $0.hasSuffix("/data.pkl") }) else {
            throw CheckpointError.malformed(
                path: path, what: "zip archive has no data.pkl (not a torch.save checkpoint)")
        }
        let root = String(pkl.dropLast("data.pkl".count))
        if zip.entries[root + "byteorder"] != nil {
            let (o, n) = try zip.data(root + "byteorder")
            let order = String(decoding: file.bytes(at: o, count: n)!, as: UTF8.self)
            guard order == "little" else {
                throw CheckpointError.unsupported(
                    path: path, what: "byte order '\(order)' (only little-endian archives are read)")
            }
        }
        let (po, pn) = try zip.data(pkl)
        var checked: [String: (offset: Int, bytes: Int)] = [:]
        var unpickler = Unpickler(path: path, bytes: file.bytes(at: po, count: pn)!) { storage, offset, size, strides in
            guard case let .storage(dtype, key, numel) = storage else {
                throw CheckpointError.pickleRefused(path: path, what: "tensor without a storage")
            }
            let entryName = root + "data/" + key
            let entry: (offset: Int, bytes: Int)
            if let e = checked[key] { entry = e } else {
                let (o, n) = try zip.data(entryName)
                guard let need = checkedProduct([numel, dtype.size]), need <= n else {
                    throw CheckpointError.tensorOutOfRange(
                        path: path, tensor: entryName,
                        what: "storage of \(numel) \(dtype.rawValue) elements does not fit its \(n)-byte entry")
                }
                entry = (o, n)
                checked[key] = entry
            }
            guard size.count == strides.count, size.allSatisfy({ $0 >= 0 }), strides.allSatisfy({ $0 >= 0 }),
                offset >= 0 else {
                throw CheckpointError.tensorOutOfRange(
                    path: path, tensor: entryName, what: "size \(size) / stride \(strides) are not valid")
            }
            if size.allSatisfy({ $0 > 0 }) {
                var last = offset
                for (s, st) in Swift.zip(size, strides) {
                    let (m, o1) = (s - 1).multipliedReportingOverflow(by: st)
                    let (a, o2) = last.addingReportingOverflow(m)
                    guard !o1,
                        !o2 else {
                        throw CheckpointError.tensorOutOfRange(
                        path: path, tensor: entryName, what: "size \(size) with stride \(strides) overflows") }
                    last = a
                }
                guard last < numel else {
                    throw CheckpointError.tensorOutOfRange(
                        path: path, tensor: entryName,
                        what: "view of size \(size), stride \(strides), offset \(offset) reaches element \(last) of "
                        + "a \(numel)-element storage")
                }
            }
            guard checkedProduct(size) != nil else {
                throw CheckpointError.tensorOutOfRange(path: path, tensor: entryName, what: "size \(size) overflows")
            }
            return RawTensor(
                dtype: dtype, shape: size, file: file, offset: entry.offset + offset * dtype.size, strides: strides)
        }
        defer { unpickler.arena.clear() }
        return try use(try unpickler.run())
    }
}
