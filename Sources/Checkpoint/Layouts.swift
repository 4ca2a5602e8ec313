import VitLensCore

/// The key layouts vitlens recognises (here, and taught by the families: `LayoutRenamer`), each
/// mapped onto timm's names, which the engine's
/// name table uses: `cls_token`, `pos_embed`, `patch_embed.proj.*`, `blocks.N.{norm1,attn.qkv,
/// attn.proj,norm2,mlp.fc1,mlp.fc2}.*`, `norm.*` or `fc_norm.*`, optional `dist_token`.
public struct Layout: RawRepresentable, Hashable, Sendable {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let timm = Layout(rawValue: "timm/DeiT")
    public static let mae = Layout(rawValue: "MAE/mae-lite")
    public static let mocoV3 = Layout(rawValue: "MoCo v3")
    public static let dino = Layout(rawValue: "DINO")
    public static let huggingFace = Layout(rawValue: "Hugging Face ViT")
    public static let clip = Layout(rawValue: "OpenAI/OpenCLIP CLIP")
    public static let huggingFaceCLIP = Layout(rawValue: "Hugging Face CLIP")
    public static let facebookDINOv2 = Layout(rawValue: "Facebook DINOv2")
    public static let huggingFaceDINOv2 = Layout(rawValue: "Hugging Face DINOv2")
    public static let beit = Layout(rawValue: "timm BEiT")
    public static let huggingFaceSigLIP = Layout(rawValue: "Hugging Face SigLIP")
    public static let huggingFaceBEiT = Layout(rawValue: "Hugging Face BEiT")
    public static let huggingFaceSigLIP2 = Layout(rawValue: "Hugging Face SigLIP 2 (NaFlex)")
    public static let evaMIM = Layout(rawValue: "EVA-02 MIM")
    public static let facebookDINOv3 = Layout(rawValue: "Facebook DINOv3")
}

/// A key layout another module teaches the loader (a model family's file, Families/): for a
/// state dict's keys, the rule that renames each key to timm's names (nil: not the model's, listed
/// as ignored) and the layout's name; nil when the keys are not this layout's.
public typealias LayoutRenamer = @Sendable ([String]) -> (rename: @Sendable (String) -> String?, layout: Layout)?

/// Containers searched for the state dict, in order (docs/reference.md, "Checkpoints").
let stateDictContainers = ["model", "state_dict", "model_ema", "teacher", "student", "module"]
/// Wrapper prefixes stripped from the front of every key (docs/reference.md, "Checkpoints"), repeatedly.
let strippedPrefixes = ["module.", "model.", "base_encoder.", "backbone.", "encoder."]

struct MappedStateDict {
    var tensors: [String: RawTensor] = [:]
    var ignored: [String] = []
    var layout: Layout
    /// The key projection has no bias (only q's and v's were stored, or a mask zeroes it).
    var keyBiasAbsent = false
    /// q, k, v stored as separate projections; SwiGLU's gate and up as separate layers.
    var separateQKV = false, separateGLU = false
}

public enum LayoutMapper {
    static func isHuggingFace(_ keys: [String]) -> Bool {
        keys.contains { $0.hasSuffix("embeddings.patch_embeddings.projection.weight") }
    }

    static func stripTimm(_ key: String, stripped: inout Set<String>) -> String {
        var k = key
        var changed = true
        while changed {
            changed = false
            for p in strippedPrefixes where k.hasPrefix(p) {
                k.removeFirst(p.count)
                stripped.insert(p)
                changed = true
            }
        }
        return k
    }

    /// transformers' CLIPModel (`vision_model.` prefix) and CLIPVisionModel (with or, saved by
    /// transformers 5, without it).
    /// transformers' SiglipModel / SiglipVisionModel share CLIP's names, without `pre_layrnorm`
    /// and the class embedding.
    static func isHFCLIP(_ keys: [String]) -> Bool {
        keys.contains { $0.hasSuffix("embeddings.patch_embedding.weight") }
            && keys.contains {
                $0.hasSuffix("pre_layrnorm.weight") || $0.hasSuffix("encoder.layers.0.self_attn.q_proj.weight") }
    }

    /// OpenAI's and OpenCLIP's CLIP state dicts: both towers, the image tower under `visual.`.
    /// Meta's Perception Encoder `.pt` files use the same names, with or without `visual.`.
    static func isCLIP(_ keys: [String]) -> Bool {
        keys.contains { $0.hasSuffix("visual.conv1.weight") }
            || (keys.contains("text_projection") && keys.contains("token_embedding.weight"))
            || (keys.contains("conv1.weight") && keys.contains { $0.hasPrefix("transformer.resblocks.") })
    }

    static func holdsViT(_ keys: [String], renamers: [LayoutRenamer] = []) -> Bool {
        if isHuggingFace(keys) || isCLIP(keys) || isHFCLIP(keys) { return true }
        if renamers.contains(where: { $0(keys) != nil }) { return true }
        var s = Set<String>()
        return keys.contains { stripTimm($0, stripped: &s) == "patch_embed.proj.weight" }
    }

    /// Whether a canonical key is one the engine uses.
    static func isUsed(_ k: String) -> Bool { ViTKeys.topLevel.contains(k) || blockPart(k) != nil }

    /// ("N", "attn.qkv.weight") for `blocks.N.attn.qkv.weight`.
    public static func blockPart(_ k: String) -> (Int, String)? { ViTKeys.blockIndex(k) }

    static let blockParts = Set(ViTKeys.BlockPart.allCases.map(\.rawValue))

    /// Keys that would change the forward pass if ignored: refused rather than dropped.
    static let unsupportedTop: Set<String> = []

    /// Other spellings of the engine's names: Facebook's DeiT III writes LayerScale as
    /// gamma_1/gamma_2, Facebook's DINOv2 the registers as `register_tokens`.
    static func canonical(_ k: String) -> String {
        if k == "register_tokens" || k == "storage_tokens" { return ViTKeys.registerTokens }
        guard let (n, part) = blockPart(k) else { return k }
        switch part {
        case "gamma_1": return ViTKeys.block(n, .layerScale1)
        case "gamma_2": return ViTKeys.block(n, .layerScale2)
        default:
            // EVA's and DINOv3's SwiGLU (w12 packed, or w1 gate, w2 up, ffn_ln, w3 out) and EVA-02
            // CLIP's norm on the attention output, as timm's checkpoint_filter_fn renames them.
            for (a, b) in [("mlp.w12.", "mlp.fc1."), ("mlp.w1.", "mlp.fc1_g."), ("mlp.w2.", "mlp.fc1_x."),
                           ("mlp.w3.", "mlp.fc2."), ("mlp.ffn_ln.", "mlp.norm."), ("attn.inner_attn_ln.", "attn.norm.")]
                where part.hasPrefix(a) {
                return "blocks.\(n)." + b + part.dropFirst(a.count)
            }
            return k
        }
    }

    static func map(_ raw: [String: RawTensor], container: String?, path: String,
                    renamers: [LayoutRenamer] = []) throws -> MappedStateDict {
        let keys = raw.keys.sorted()
        if raw["patch_embed.proj.weight"] == nil, let (rename, layout) = renamers.lazy.compactMap({ $0(keys) }).first {
            var tower: [String: RawTensor] = [:], others: [String] = []
            for (k, v) in raw {
                guard let name = rename(k) else { others.append(k); continue }
                // Hugging Face keeps the position table as [N, D]: timm's [1, N, D].
                tower[name] = name == ViTKeys.positions && v.shape.count == 2
                    ? try RawTensor(shape: [1] + v.shape, floats: v.floats(name: k)) : v
            }
            var out = try map(tower, container: container, path: path)
            out.ignored = others.sorted() + out.ignored
            out.layout = layout
            return out
        }
        if isHuggingFace(keys) { return try mapHF(raw, path: path) }
        if isCLIP(keys) { return try mapCLIP(raw, path: path) }
        if isHFCLIP(keys) { return try mapHFCLIP(raw, path: path) }
        // Families vitlens does not run, named by what gave them away.
        if let k = keys.first(where: { $0.contains("layers.0.blocks.") }) {
            throw CheckpointError.notAViT(
                path: path,
                what: "\(k): a hierarchical transformer with windowed attention (Swin-style) is not supported")
        }
        if let k = keys.first(where: { $0.contains("patch_embed.backbone.") }) {
            throw CheckpointError.notAViT(path: path, what: "\(k): a hybrid CNN stem is not supported")
        }
        var stripped = Set<String>()
        var out = MappedStateDict(layout: .timm)
        // Separate q, k, v projections or biases (BEiT's and EVA-02's q_bias/v_bias, EVA-02's
        // q_proj/k_proj/v_proj), fused into qkv below; SwiGLU's separate gate and up projections
        // (timm's fc1_g/fc1_x, EVA's and DINOv3's w1/w2), packed into fc1 below.
        var qkv: [Int: [String: RawTensor]] = [:], glu: [Int: [String: RawTensor]] = [:]
        let pieces = ["attn.q_bias": "q.bias", "attn.k_bias": "k.bias", "attn.v_bias": "v.bias",
                      "attn.q_proj.weight": "q.weight", "attn.k_proj.weight": "k.weight",
                      "attn.v_proj.weight": "v.weight", "attn.q_proj.bias": "q.bias", "attn.k_proj.bias": "k.bias",
                      "attn.v_proj.bias": "v.bias",
                      "mlp.fc1_g.weight": "g.weight", "mlp.fc1_g.bias": "g.bias", "mlp.fc1_x.weight": "x.weight",
                      "mlp.fc1_x.bias": "x.bias"]
        // DINOv3's masked k bias (Facebook's `qkv.bias_mask`): the stored bias times the mask.
        var biasMasks: [Int: RawTensor] = [:]
        for key in keys {
            let k = canonical(stripTimm(key, stripped: &stripped))
            if let (n, part) = blockPart(k) {
                if let piece = pieces[part] {
                    if piece.hasPrefix("g.") || piece.hasPrefix("x.") { glu[n, default: [:]][piece] = raw[key] }
                    else { qkv[n, default: [:]][piece] = raw[key] }
                    continue
                }
                if part == "attn.qkv.bias_mask" { biasMasks[n] = raw[key]; continue }
            }
            if let (_, part) = blockPart(k), !blockParts.contains(part) {
                throw CheckpointError.notAViT(
                    path: path,
                    what: "\(key): unsupported tensor in a ViT block (only plain pre-norm blocks are supported)")
            }
            if unsupportedTop.contains(k) {
                throw CheckpointError.notAViT(path: path, what: "\(key): unsupported ViT variant")
            }
            if isUsed(k) {
                if out.tensors[k] != nil {
                    throw CheckpointError.malformed(path: path, what: "two tensors map to \(k) (\(key) and another)")
                }
                out.tensors[k] = raw[key]
            } else {
                out.ignored.append(key)
            }
        }
        if let n = qkv.keys.sorted().first(where: {
            out.tensors[ViTKeys.block($0, .qkvBias)] != nil && qkv[$0]?["q.bias"] != nil }) {
            throw CheckpointError.malformed(
                path: path, what: "block \(n) has both attn.qkv.bias and separate q and v biases")
        }
        out.separateQKV = qkv.values.contains { $0["q.weight"] != nil }
        out.separateGLU = !glu.isEmpty
        // No k bias: zeros of q's shape (only q's and v's are stored).
        for (n, p) in qkv where p["k.bias"] == nil {
            guard let q = p["q.bias"] else { continue }
            qkv[n]!["k.bias"] = RawTensor(shape: q.shape, floats: [Float](repeating: 0, count: q.shape.reduce(1, *)))
            out.keyBiasAbsent = true
        }
        try fuseQKV(qkv, into: &out, names: { n, piece, kind in "blocks.\(n).attn.\(piece)_\(kind)" },
                    pieces: ["q", "k", "v"])
        try fuseRows(glu, into: &out, path: path, pieces: ["g", "x"],
                     target: { ViTKeys.block($0, $1 == "weight" ? .fc1Weight : .fc1Bias) },
                     names: { n, piece, kind in "blocks.\(n).mlp.fc1_\(piece).\(kind)" })
        for (n, mask) in biasMasks {
            let name = ViTKeys.block(n, .qkvBias)
            guard let bias = out.tensors[name] else { continue }
            guard mask.shape == bias.shape else {
                throw CheckpointError.badShape(
                    tensor: "blocks.\(n).attn.qkv.bias_mask", expected: bias.shape, got: mask.shape)
            }
            let m = try mask.floats(name: "blocks.\(n).attn.qkv.bias_mask"), b = try bias.floats(name: name)
            if let i = m.firstIndex(where: { $0 != 0 && $0 != 1 }) {
                throw CheckpointError.malformed(
                    path: path, what: "blocks.\(n).attn.qkv.bias_mask[\(i)] is \(m[i]), not 0 or 1")
            }
            out.tensors[name] = RawTensor(shape: bias.shape, floats: zip(b, m).map { $0 * $1 })
            if m.contains(0) { out.keyBiasAbsent = true }
        }
        let beit = keys.contains { $0.hasSuffix("relative_position_bias_table") }
        if container == "teacher" || container == "student" || stripped.contains("backbone.") {
            out.layout = .dino
        } else if stripped.contains("base_encoder.") {
            out.layout = .mocoV3
        } else if keys.contains("storage_tokens") {
            out.layout = .facebookDINOv3
        } else if keys.contains(where: {
            $0.contains("mlp.w12.") || $0.contains("mlp.ffn_ln.") || $0.hasSuffix("rope.freqs_cos") }) {
            out.layout = .evaMIM
        } else if keys.contains("register_tokens") || keys.contains("mask_token")
            && keys.contains(where: { $0.hasSuffix(".ls1.gamma") }) {
            out.layout = .facebookDINOv2
        } else if stripped.contains("model.")
            || keys.contains(where: { $0.contains("decoder_") || $0.hasSuffix("mask_token") }) {
            out.layout = .mae
        } else if beit {
            out.layout = .beit
        }
        return out
    }

    /// OpenAI / OpenCLIP CLIP: `visual.conv1` (no bias), `visual.class_embedding` [D],
    /// `visual.positional_embedding` [T, D], `visual.ln_pre`, `visual.transformer.resblocks.N.
    /// {ln_1, attn.in_proj_*, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}`, `visual.ln_post` (as
    /// timm's `_convert_openai_clip` maps them); `visual.proj` and the text tower are ignored.
    static func mapCLIP(_ raw: [String: RawTensor], path: String) throws -> MappedStateDict {
        var out = MappedStateDict(layout: .clip)
        var prefix = "visual."
        if let k = raw.keys.first(where: { $0.hasSuffix("visual.conv1.weight") }) {
            prefix = String(k.dropLast("conv1.weight".count))
        } else if raw["conv1.weight"] != nil {
            prefix = ""
        }
        guard raw.keys.contains(where: { $0.hasPrefix(prefix) }) else {
            throw CheckpointError.notAViT(
                path: path, what: "a CLIP state dict without visual.* (the text tower alone; no image tower)")
        }
        let swaps = [
            ("conv1.", "patch_embed.proj."), ("ln_pre.", "norm_pre."), ("ln_post.", "norm."),
            ("transformer.resblocks.", "blocks."),
                     (".ln_1.", ".norm1."), (".ln_2.", ".norm2."), ("attn.in_proj_", "attn.qkv."),
                         ("attn.out_proj.", "attn.proj."), (".ls_1.gamma", ".ls1.gamma"),
                         (".ls_2.gamma", ".ls2.gamma"),
                     ("mlp.c_fc.", "mlp.fc1."), ("mlp.c_proj.", "mlp.fc2.")]
        for key in raw.keys.sorted() {
            guard key.hasPrefix(prefix), let t = raw[key] else { out.ignored.append(key); continue }
            var k = String(key.dropFirst(prefix.count))
            if try takeCLIPEmbedding(
                k, t, key: key, classToken: "class_embedding", positions: "positional_embedding", into: &out) {
                continue }
            for (a, b) in swaps { k = k.replacingOccurrences(of: a, with: b) }
            if let (_, part) = blockPart(k), !blockParts.contains(part) {
                throw CheckpointError.notAViT(path: path, what: "\(key): unsupported tensor in a CLIP residual block")
            }
            if isUsed(k) { out.tensors[k] = t } else { out.ignored.append(key) }
        }
        return out
    }

    /// Hugging Face transformers ViT/DeiT: `vit.encoder.layer.N.attention.attention.query.weight` …;
    /// separate q/k/v are fused into timm's qkv (rows q, then k, then v).
    static func mapHF(_ raw: [String: RawTensor], path: String) throws -> MappedStateDict {
        var out = MappedStateDict(layout: .huggingFace)
        var qkv: [Int: [String: RawTensor]] = [:]
        // BeitModel: q and v biases only, relative position tables, LayerScale as lambda_1/2.
        let beit = raw.keys.contains {
            $0.hasPrefix("beit.") || $0.contains("relative_position_bias") || $0.hasSuffix(".lambda_1") }
        for key in raw.keys.sorted() {
            var k = key
            for p in ["module.", "vit.", "deit.", "dinov2.", "beit."] where k.hasPrefix(p) { k.removeFirst(p.count) }
            let direct: [String: String] = [
                "embeddings.cls_token": ViTKeys.classToken,
                "embeddings.register_tokens": ViTKeys.registerTokens,
                "embeddings.distillation_token": ViTKeys.distillationToken,
                "embeddings.position_embeddings": ViTKeys.positions,
                "embeddings.patch_embeddings.projection.weight": ViTKeys.patchWeight,
                "embeddings.patch_embeddings.projection.bias": ViTKeys.patchBias,
                "layernorm.weight": ViTKeys.FinalNorm.norm.weight, "layernorm.bias": ViTKeys.FinalNorm.norm.bias,
                // BEiT: the mean-pooling head's norm is timm's fc_norm; the shared bias table.
                "pooler.layernorm.weight": ViTKeys.FinalNorm.fcNorm.weight,
                    "pooler.layernorm.bias": ViTKeys.FinalNorm.fcNorm.bias,
                "encoder.relative_position_bias.relative_position_bias_table": ViTKeys.sharedRelativeTable,
                "encoder.relative_position_bias.relative_position_index": ViTKeys.sharedRelativeIndex,
            ]
            if let c = direct[k] { out.tensors[c] = raw[key]; continue }
            if k.hasPrefix("encoder.layer.") {
                let rest = k.dropFirst("encoder.layer.".count)
                guard let dot = rest.firstIndex(of: "."),
                    let n = Int(rest[..<dot]) else { out.ignored.append(key); continue }
                let part = String(rest[rest.index(after: dot)...])
                let table: [String: ViTKeys.BlockPart] = [
                    "layernorm_before.weight": .norm1Weight, "layernorm_before.bias": .norm1Bias,
                    "attention.output.dense.weight": .projWeight, "attention.output.dense.bias": .projBias,
                    "layernorm_after.weight": .norm2Weight, "layernorm_after.bias": .norm2Bias,
                    "intermediate.dense.weight": .fc1Weight, "intermediate.dense.bias": .fc1Bias,
                    "output.dense.weight": .fc2Weight, "output.dense.bias": .fc2Bias,
                    // Dinov2Model / Dinov2WithRegistersModel spell the block as timm nearly does.
                    "norm1.weight": .norm1Weight, "norm1.bias": .norm1Bias, "norm2.weight": .norm2Weight,
                        "norm2.bias": .norm2Bias,
                    "mlp.fc1.weight": .fc1Weight, "mlp.fc1.bias": .fc1Bias, "mlp.fc2.weight": .fc2Weight,
                        "mlp.fc2.bias": .fc2Bias,
                    "layer_scale1.lambda1": .layerScale1, "layer_scale2.lambda1": .layerScale2,
                    "lambda_1": .layerScale1, "lambda_2": .layerScale2,
                    "attention.attention.relative_position_bias.relative_position_bias_table": .relativePositionTable,
                    "attention.attention.relative_position_bias.relative_position_index": .relativePositionIndex,
                ]
                if let c = table[part] { out.tensors[ViTKeys.block(n, c)] = raw[key]; continue }
                if part.hasPrefix("attention.attention.") {
                    qkv[n, default: [:]][String(part.dropFirst("attention.attention.".count))] = raw[key]
                    continue
                }
                throw CheckpointError.notAViT(path: path, what: "\(key): unsupported tensor in a ViT layer")
            }
            out.ignored.append(key)
        }
        if beit {
            // BEiT's key projection has no bias: zeros where the query's and the value's are stored.
            for (n, parts) in qkv where parts["key.bias"] == nil {
                if let q = parts["query.bias"], parts["value.bias"] != nil {
                    qkv[n]!["key.bias"] = RawTensor(
                        shape: q.shape, floats: [Float](repeating: 0, count: q.shape.reduce(1, *)))
                }
            }
        }
        try fuseQKV(
            qkv, into: &out, names: { n, piece, kind in "encoder.layer.\(n).attention.attention.\(piece).\(kind)" },
                    pieces: ["query", "key", "value"])
        if beit { out.layout = .huggingFaceBEiT }
        else if out.tensors[ViTKeys.block(0, .layerScale1)] != nil { out.layout = .huggingFaceDINOv2 }
        return out
    }

    /// CLIP keeps its class token as [D] and its position embedding as [T, D]: reshaped to timm's
    /// [1, 1, D] and [1, T, D]. True when `k` was one of them.
    static func takeCLIPEmbedding(_ k: String, _ t: RawTensor, key: String, classToken: String, positions: String,
                                  into out: inout MappedStateDict) throws -> Bool {
        switch k {
        case classToken:
            guard t.shape.count == 1 else {
                throw CheckpointError.badShape(tensor: key, expected: [t.shape.last ?? 0], got: t.shape) }
            out.tensors[ViTKeys.classToken] = try RawTensor(shape: [1, 1] + t.shape, floats: t.floats(name: key))
        case positions:
            guard t.shape.count == 2 else {
                throw CheckpointError.badShape(tensor: key, expected: [197, t.shape.last ?? 0], got: t.shape) }
            out.tensors[ViTKeys.positions] = try RawTensor(shape: [1] + t.shape, floats: t.floats(name: key))
        default: return false
        }
        return true
    }

    /// Separate q, k, v projections of each block fused into timm's qkv (rows q, then k, then v).
    /// qkv[n]["<piece>.<weight|bias>"]; `names` spells a source tensor for messages.
    static func fuseQKV(_ qkv: [Int: [String: RawTensor]], into out: inout MappedStateDict,
                        names: (Int, String, String) -> String, pieces: [String]) throws {
        for (n, parts) in qkv {
            for kind in ["weight", "bias"] {
                let found = pieces.map { parts[$0 + "." + kind] }
                if found.allSatisfy({ $0 == nil }) { continue }
                guard let q = found[0], let kk = found[1], let v = found[2] else {
                    let missing = pieces.first { parts[$0 + "." + kind] == nil }!
                    throw CheckpointError.missingTensor(names(n, missing, kind))
                }
                guard q.shape == kk.shape, q.shape == v.shape, !q.shape.isEmpty else {
                    throw CheckpointError.badShape(tensor: names(n, pieces[1], kind), expected: q.shape, got: kk.shape)
                }
                let name = ViTKeys.block(n, kind == "weight" ? .qkvWeight : .qkvBias)
                let fused = try q.floats(name: name) + kk.floats(name: name) + v.floats(name: name)
                out.tensors[name] = RawTensor(shape: [3 * q.shape[0]] + q.shape.dropFirst(), floats: fused)
            }
        }
    }

    /// Row blocks of one tensor stored apart (SwiGLU's gate and up projections) stacked into one,
    /// in the order of `pieces`: parts[n]["<piece>.<weight|bias>"].
    static func fuseRows(_ parts: [Int: [String: RawTensor]], into out: inout MappedStateDict, path: String,
                         pieces: [String],
                         target: (Int, String) -> String, names: (Int, String, String) -> String) throws {
        for (n, p) in parts {
            for kind in ["weight", "bias"] {
                let found = pieces.map { p[$0 + "." + kind] }
                if found.allSatisfy({ $0 == nil }) { continue }
                if let missing = pieces.first(where: { p[$0 + "." + kind] == nil }) {
                    throw CheckpointError.missingTensor(names(n, missing, kind))
                }
                let first = found[0]!
                for (piece, t) in zip(pieces, found) where t!.shape != first.shape || first.shape.isEmpty {
                    throw CheckpointError.badShape(tensor: names(n, piece, kind), expected: first.shape, got: t!.shape)
                }
                let name = target(n, kind)
                if out.tensors[name] != nil {
                    throw CheckpointError.malformed(path: path, what: "block \(n) has both \(name) and separate pieces")
                }
                let values = try found.flatMap { try $0!.floats(name: name) }
                out.tensors[name] = RawTensor(
                    shape: [pieces.count * first.shape[0]] + first.shape.dropFirst(), floats: values)
            }
        }
    }

    /// A linear patch embedding [D, p·p·3] reading each patch as (py, px, channel), as
    /// transformers' SigLIP 2 NaFlex does, as the equivalent convolution [D, 3, p, p].
    static func convolutionFromLinearPatches(_ t: RawTensor, name: String) throws -> RawTensor {
        let (d, k) = (t.shape[0], t.shape[1])
        let p = Int(Double(k / 3).squareRoot().rounded())
        guard k % 3 == 0, p > 0, p * p * 3 == k else {
            throw CheckpointError.badShape(tensor: name, expected: [d, 3 * 16 * 16], got: t.shape)
        }
        let w = try t.floats(name: name)
        var conv = [Float](repeating: 0, count: d * k)
        for o in 0..<d {
            for y in 0..<p {
                for x in 0..<p {
                    for c in 0..<3 { conv[((o * 3 + c) * p + y) * p + x] = w[o * k + (y * p + x) * 3 + c] }
                }
            }
        }
        return RawTensor(shape: [d, 3, p, p], floats: conv)
    }

    /// transformers' CLIP image tower: `[vision_model.]embeddings.{class_embedding [D],
    /// patch_embedding (no bias), position_embedding [T, D]}`, `pre_layrnorm`, `encoder.layers.N.
    /// {layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}`, `post_layernorm`;
    /// the text tower, the projections and `logit_scale` are ignored. SigLIP's image tower is the
    /// same without `pre_layrnorm` and the class embedding, with a patch bias; its attention-pooling
    /// `head.*` is ignored.
    static func mapHFCLIP(_ raw: [String: RawTensor], path: String) throws -> MappedStateDict {
        let siglip = !raw.keys.contains { $0.hasSuffix("pre_layrnorm.weight") }
        var out = MappedStateDict(layout: siglip ? .huggingFaceSigLIP : .huggingFaceCLIP)
        var qkv: [Int: [String: RawTensor]] = [:]
        let prefix = raw.keys.contains { $0.hasPrefix("vision_model.") } ? "vision_model." : ""
        for key in raw.keys.sorted() {
            guard key.hasPrefix(prefix), !key.hasPrefix("text_model."),
                let t = raw[key] else { out.ignored.append(key); continue }
            let k = String(key.dropFirst(prefix.count))
            if try takeCLIPEmbedding(
                k, t, key: key, classToken: "embeddings.class_embedding",
                positions: "embeddings.position_embedding.weight",
                                     into: &out) { continue }
            if k == "embeddings.patch_embedding.weight" && t.shape.count == 2 {
                // SigLIP 2 NaFlex: a linear patch embedding over (py, px, channel).
                out.tensors[ViTKeys.patchWeight] = try convolutionFromLinearPatches(t, name: key)
                out.layout = .huggingFaceSigLIP2
                continue
            }
            let direct: [String: String] = [
                "embeddings.patch_embedding.weight": ViTKeys.patchWeight,
                    "embeddings.patch_embedding.bias": ViTKeys.patchBias,
                "pre_layrnorm.weight": ViTKeys.preNormWeight, "pre_layrnorm.bias": ViTKeys.preNormBias,
                "post_layernorm.weight": ViTKeys.FinalNorm.norm.weight,
                    "post_layernorm.bias": ViTKeys.FinalNorm.norm.bias,
            ]
            if let c = direct[k] { out.tensors[c] = t; continue }
            if k.hasPrefix("encoder.layers.") {
                let rest = k.dropFirst("encoder.layers.".count)
                guard let dot = rest.firstIndex(of: "."),
                    let n = Int(rest[..<dot]) else { out.ignored.append(key); continue }
                let part = String(rest[rest.index(after: dot)...])
                let table: [String: ViTKeys.BlockPart] = [
                    "layer_norm1.weight": .norm1Weight, "layer_norm1.bias": .norm1Bias,
                    "self_attn.out_proj.weight": .projWeight, "self_attn.out_proj.bias": .projBias,
                    "layer_norm2.weight": .norm2Weight, "layer_norm2.bias": .norm2Bias,
                    "mlp.fc1.weight": .fc1Weight, "mlp.fc1.bias": .fc1Bias, "mlp.fc2.weight": .fc2Weight,
                        "mlp.fc2.bias": .fc2Bias,
                ]
                if let c = table[part] { out.tensors[ViTKeys.block(n, c)] = t; continue }
                if part.hasPrefix("self_attn."), part.contains("_proj.") {
                    qkv[n, default: [:]][
                        String(part.dropFirst("self_attn.".count)).replacingOccurrences(of: "_proj.", with: ".")] = t
                    continue
                }
                throw CheckpointError.notAViT(path: path, what: "\(key): unsupported tensor in a CLIP encoder layer")
            }
            out.ignored.append(key)
        }
        try fuseQKV(
            qkv, into: &out,
            names: { n, piece, kind in "\(prefix)encoder.layers.\(n).self_attn.\(piece)_proj.\(kind)" },
                    pieces: ["q", "k", "v"])
        return out
    }
}
