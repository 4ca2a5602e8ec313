import Foundation
import VitLensCore

/// What a Hugging Face `config.json` says about the architecture.
public struct HFConfig: Sendable {
    public var heads: Int?
    public var layerNormEps: Double?
    /// The key eps was read from (`layer_norm_eps`, or AIMv2's `rms_norm_eps`).
    public var layerNormEpsKey = "layer_norm_eps"
    public var imageSize: Int?
    public var patchSize: Int?
    public var hiddenAct: String?
    public var hiddenSize: Int?
    public var layers: Int?
    /// The rotary base θ (DINOv3's `rope_theta`).
    public var ropeTheta: Double?
}

/// A checkpoint read and mapped onto timm's key names, weights still in the file's memory map.
public struct LoadedCheckpoint {
    public let path: String
    /// The file the weights came from (the weights file inside a Hugging Face folder).
    public let weightsPath: String
    public let format: String
    public let layout: Layout
    /// Where the state dict was found: "top level" or the container key.
    public let location: String
    public let tensors: [String: RawTensor]
    /// Keys present in the file but not used by the forward pass (heads, decoders, optimizer …).
    public let ignored: [String]
    public let metadata: [String: String]
    public let config: HFConfig?
    let file: MappedFile
    /// LayerScale written `gamma_1`/`gamma_2` (Facebook's DeiT III, BEiT, timm's Eva) rather than
    /// timm's `ls1.gamma`: with a top-level state dict, a hint of timm's Eva-based rope ViTs.
    public var layerScaleAsGamma = false
    /// The key projection has no bias: only q's and v's were stored (zeros put in its place), or
    /// a stored mask zeroes it (DINOv3).
    public var keyBiasAbsent = false
    /// The file held q, k, v as separate projections, SwiGLU's gate and up as separate layers
    /// (fine-tuned models are saved the same way).
    public var separateQKV = false, separateGLU = false

    /// The weights file's bytes, as mapped (for hashing: SHA-256 is computed where reports are made).
    public var fileBytes: UnsafeRawBufferPointer { file.all }

    /// The same checkpoint holding other tensors (tests patch weights this way).
    public func replacingTensors(_ t: [String: RawTensor], ignored: [String]? = nil,
                                 metadata: [String: String]? = nil) -> LoadedCheckpoint {
        var c = LoadedCheckpoint(path: path, weightsPath: weightsPath, format: format, layout: layout,
                                 location: location, tensors: t, ignored: ignored ?? self.ignored,
                                 metadata: metadata ?? self.metadata, config: config, file: file)
        c.layerScaleAsGamma = layerScaleAsGamma
        c.keyBiasAbsent = keyBiasAbsent
        (c.separateQKV, c.separateGLU) = (separateQKV, separateGLU)
        return c
    }
}

public enum CheckpointLoader {
    /// The checkpoint at `path` (a file or a Hugging Face folder), its keys mapped onto timm's names
    /// by the layouts here and those `renamers` teach (the families': Families' `loadModel`).
    public static func load(path: String, renamers: [LayoutRenamer] = []) throws -> LoadedCheckpoint {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FileError.cannotOpen(path: path, reason: "no such file or directory")
        }
        if isDir.boolValue {
            let cfg = path + "/config.json"
            guard FileManager.default.fileExists(atPath: cfg) else {
                throw CheckpointError.unknownFormat(path: path)
            }
            let config = try readConfig(cfg)
            for name in ["model.safetensors", "pytorch_model.bin"] {
                let w = path + "/" + name
                if FileManager.default.fileExists(atPath: w) {
                    return try loadFile(w, displayPath: path, config: config, folder: true, renamers: renamers)
                }
            }
            throw CheckpointError.config(
                path: path,
                what: "Hugging Face folder has config.json but neither model.safetensors nor pytorch_model.bin")
        }
        // A config.json beside a weights file is used too (a Hugging Face snapshot's file given directly).
        let beside = (path as NSString).deletingLastPathComponent + "/config.json"
        let config = FileManager.default.fileExists(atPath: beside) ? try? readConfig(beside) : nil
        return try loadFile(path, displayPath: path, config: config, folder: false, renamers: renamers)
    }

    static func loadFile(_ path: String, displayPath: String, config: HFConfig?, folder: Bool,
                         renamers: [LayoutRenamer] = []) throws -> LoadedCheckpoint {
        try load(file: try MappedFile(path: path), displayPath: displayPath, config: config, folder: folder,
                 renamers: renamers)
    }

    /// Reads a checkpoint already in memory or mapped (`file.path` names it in errors).
    static func load(file: MappedFile, displayPath: String, config: HFConfig?, folder: Bool,
                     renamers: [LayoutRenamer] = []) throws -> LoadedCheckpoint {
        let path = file.path
        guard file.count > 0 else { throw CheckpointError.truncated(path: path, what: "file is empty") }
        var raw: [String: RawTensor] = [:]
        var metadata: [String: String] = [:]
        var format: String
        var location = "top level"
        var container: String?
        var topIgnored: [String] = []
        if ZipArchive.looksLikeZip(file) {
            format = "PyTorch zip archive"
            // Unpickling and releasing the pickled object run on a thread with a 1 GB stack
            // (virtual; only what is touched is committed): a hostile pickle can nest up to
            // Unpickler.maxContainers levels, and releasing it recurses once per level.
            (raw, location, container, topIgnored) = try runWithLargeStack(1 << 30) {
                try stateDict(file, path: path, renamers: renamers) }
        } else if let b = file.bytes(at: 0, count: 2), b[0] == 0x80, b[1] <= 5 {
            throw CheckpointError.unsupported(
                path: path,
                what: "legacy (pre-1.6) torch.save format; re-save it with a current PyTorch (torch.save writes zip "
                + "archives)")
        } else if let b = file.bytes(at: 8, count: 1), b[0] == UInt8(ascii: "{") {
            let (t, m) = try Safetensors.read(file)
            raw = t
            metadata = m
            let dtypes = Set(t.values.map(\.dtype.rawValue)).sorted()
            format = "safetensors (" + dtypes.joined(separator: ", ") + ")"
        } else {
            throw CheckpointError.unknownFormat(path: path)
        }
        if folder { format = "Hugging Face folder, " + format + " " + (path as NSString).lastPathComponent }
        guard LayoutMapper.holdsViT(Array(raw.keys), renamers: renamers) else {
            throw CheckpointError.notAViT(
                path: path,
                what: "no patch_embed.proj.weight (or Hugging Face patch_embeddings) among \(raw.count) tensors")
        }
        let mapped = try LayoutMapper.map(raw, container: container, path: path, renamers: renamers)
        var loaded = LoadedCheckpoint(path: displayPath, weightsPath: path, format: format, layout: mapped.layout,
                                      location: location, tensors: mapped.tensors,
                                      ignored: topIgnored + mapped.ignored,
                                      metadata: metadata, config: config, file: file)
        loaded.layerScaleAsGamma = raw.keys.contains { $0.hasSuffix(".gamma_1") }
        loaded.keyBiasAbsent = mapped.keyBiasAbsent
        (loaded.separateQKV, loaded.separateGLU) = (mapped.separateQKV, mapped.separateGLU)
        return loaded
    }

    /// The ViT state dict inside a torch.save archive: at the top level or under one of
    /// `stateDictContainers`; also where it was found and the other top-level keys.
    static func stateDict(_ file: MappedFile, path: String, renamers: [LayoutRenamer] = []) throws
        -> ([String: RawTensor], String, String?, [String]) {
        var raw: [String: RawTensor] = [:]
        var location = "top level"
        var container: String?
        var topIgnored: [String] = []
        try TorchArchive.read(file) { root in
            guard case let .dict(top) = root else {
                throw CheckpointError.notAViT(path: path, what: "the pickled object is not a dict")
            }
            let topTensors = tensorsOf(top)
            if LayoutMapper.holdsViT(Array(topTensors.keys), renamers: renamers) {
                raw = topTensors
            } else {
                for name in stateDictContainers {
                    if let v = top.lookup(name), case let .dict(d) = v {
                        let t = tensorsOf(d)
                        if LayoutMapper.holdsViT(Array(t.keys), renamers: renamers) {
                            raw = t
                            location = name
                            container = name
                            break
                        }
                    }
                }
                guard container != nil else {
                    let keys = top.items.compactMap {
                        k, _ -> String? in if case let .string(s) = k { return s }; return nil }
                    throw CheckpointError.notAViT(
                        path: path,
                        what: "no ViT weights (patch_embed.proj.weight) at the top level or under "
                        + "\(stateDictContainers.joined(separator: ", ")); top-level keys: "
                        + "\(keys.prefix(12).joined(separator: ", "))")
                }
                for (k, _) in top.items { if case let .string(s) = k, s != container { topIgnored.append(s) } }
            }
        }
        return (raw, location, container, topIgnored)
    }

    /// The tensors of a state dict, by key; non-tensor entries are skipped.
    static func tensorsOf(_ d: PickleDict) -> [String: RawTensor] {
        var out: [String: RawTensor] = [:]
        for (k, v) in d.items {
            if case let .string(s) = k, case let .tensor(t) = v { out[s] = t }
        }
        return out
    }

    static func readConfig(_ path: String) throws -> HFConfig {
        guard let data = FileManager.default.contents(atPath: path),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CheckpointError.config(path: path, what: "not a JSON object")
        }
        // A two-tower model (CLIPModel, SiglipModel) keeps the image tower's settings in vision_config.
        let c = obj["vision_config"] as? [String: Any] ?? obj
        func int(_ k: String) -> Int? { (c[k] as? Int) ?? (c[k] as? Double).map { Int($0) } }
        var config = HFConfig(heads: int("num_attention_heads"),
                        layerNormEps: (c["layer_norm_eps"] as? Double) ?? (c["rms_norm_eps"] as? Double)
                            ?? (c["layer_norm_eps"] as? Int).map(Double.init),
                        imageSize: int("image_size"), patchSize: int("patch_size"),
                        hiddenAct: c["hidden_act"] as? String, hiddenSize: int("hidden_size"),
                            layers: int("num_hidden_layers"))
        if c["layer_norm_eps"] == nil && c["rms_norm_eps"] != nil { config.layerNormEpsKey = "rms_norm_eps" }
        config.ropeTheta = (c["rope_theta"] as? Double) ?? (c["rope_theta"] as? Int).map(Double.init)
        return config
    }
}
