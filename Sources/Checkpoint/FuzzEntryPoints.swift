import VitLensCore

/// The readers as the fuzz targets (Fuzz/, `make fuzz`) drive them: bytes in, a value or a
/// thrown error out. Anything else — a trap, a hang, unbounded memory — is a finding.
public enum FuzzEntryPoints {
    /// Format detection, then the safetensors or torch-zip reader, the layout mapping and the
    /// tensors' conversion to float32 (every tensor is read, so every offset is exercised).
    public static func checkpoint(_ bytes: [UInt8]) {
        let file = MappedFile(copying: bytes, name: "fuzz.bin")
        guard let ckpt = try? CheckpointLoader.load(
            file: file, displayPath: "fuzz.bin", config: nil, folder: false) else { return }
        for (name, t) in ckpt.tensors where t.count <= 1 << 20 { _ = try? t.floats(name: name) }
    }

    /// The restricted unpickler alone, with a tensor factory that accepts any storage.
    public static func pickle(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { buf in
            var u = Unpickler(path: "fuzz.pkl", bytes: buf) { _, _, size, _ in
                guard size.count <= 8,
                    size.allSatisfy({ $0 >= 0 && $0 <= 64 }) else {
                    throw CheckpointError.pickleRefused(path: "fuzz.pkl", what: "size") }
                return RawTensor(shape: [1], floats: [0])
            }
            defer { u.arena.clear() }
            _ = try? u.run()
        }
    }

    /// The .npy reader (features and attention from elsewhere): header, then the whole array.
    public static func npy(_ bytes: [UInt8]) {
        guard let a = try? NpyFile(file: MappedFile(copying: bytes, name: "fuzz.npy"), path: "fuzz.npy"),
            a.count <= 1 << 22 else { return }
        var out = [Float](repeating: 0, count: a.count)
        out.withUnsafeMutableBufferPointer { try? a.read(0, a.count, into: $0.baseAddress!) }
    }
}
