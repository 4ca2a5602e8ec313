import Checkpoint
import Engine
import Foundation
import VitLensCore

// The architecture of a checkpoint: what its tensors show, and what its family (given, or
// evident from them) says about the rest.
extension ViTConfig {
    /// EVA's stored rotary buffer (cos or sin of every angle at the trained grid, [g², D], each
    /// angle repeated for its pair) against the rotation vitlens builds for the family.
    static func checkRotaryBuffer(_ raw: RawTensor, name: String, cosine: Bool, config c: ViTConfig,
                                  path: String) throws {
        let D = c.headDim, g = c.grid
        guard let spec = c.rotary, !spec.learned, !spec.halfSplit, raw.shape == [g * g, D] else {
            throw EngineError.architecture(
                "\(path): \(name) has shape \(raw.shape), but "
                + (c.rotary == nil ? "the model has no rotary positions"
                   : "the \(g)×\(g) grid's rotation is [\(g * g), \(D)]"))
        }
        let stored = try raw.floats(name: name), built = spec.table(grid: g, headDim: D)
        for p in 0..<(g * g) {
            for j in 0..<D {
                let want = (cosine ? built.cos : built.sin)[p * D / 2 + j / 2]
                guard abs(stored[p * D + j] - want) <= 1e-4 else {
                    throw EngineError.architecture(
                        "\(path): \(name)[\(p), \(j)] is \(stored[p * D + j]), but \(c.modelFamily.title)'s rotation "
                        + "gives \(want) (rotary positions other than the family's are not supported)")
                }
            }
        }
    }

    /// Reads the architecture from a checkpoint's tensors. `heads`/`imageSize` override.
    public static func infer(
        from ckpt: LoadedCheckpoint, heads: Int? = nil, imageSize: Int? = nil, family given: ModelFamily? = nil
    ) throws -> ViTConfig {
        let t = ckpt.tensors
        func shape(_ k: String) throws -> [Int] {
            guard let v = t[k] else { throw CheckpointError.missingTensor(k) }
            return v.shape
        }
        let pw = try shape(ViTKeys.patchWeight)
        guard pw.count == 4, pw[1] == 3, pw[2] == pw[3], pw[2] > 0, pw[0] > 0 else {
            throw CheckpointError.badShape(
                tensor: ViTKeys.patchWeight, expected: [pw.first ?? 0, 3, pw.last ?? 0, pw.last ?? 0], got: pw)
        }
        let dim = pw[0], patch = pw[2]
        var registers = 0
        if let r = t[ViTKeys.registerTokens]?.shape {
            guard r.count == 3, r[0] == 1, r[1] >= 1, r[2] == dim else {
                throw CheckpointError.badShape(tensor: ViTKeys.registerTokens, expected: [1, 4, dim], got: r)
            }
            registers = r[1]
        }
        if registers > 0 && t[ViTKeys.distillationToken] != nil {
            throw CheckpointError.notAViT(
                path: ckpt.path, what: "both a distillation token and register tokens (no known ViT has both)")
        }
        let classToken = t[ViTKeys.classToken] != nil
        if !classToken && t[ViTKeys.distillationToken] != nil {
            throw CheckpointError.notAViT(
                path: ckpt.path, what: "a distillation token without a class token (no known ViT has that)")
        }
        let prefix = (classToken ? 1 : 0) + (t[ViTKeys.distillationToken] != nil ? 1 : 0) + registers
        // BEiT's relative position bias: [(2g−1)² + 3, H] per block and/or shared; it fixes the grid
        // and the head count.
        let blockTable = t[ViTKeys.block(0, .relativePositionTable)]?.shape,
            sharedTable = t[ViTKeys.sharedRelativeTable]?.shape
        func square(_ n: Int) -> Int? {
            let g = Int(Double(max(n, 0)).squareRoot().rounded()); return g > 0 && g * g == n ? g : nil }
        var tableGrid: Int?, tableHeads: Int?
        for (name, shape) in [
            (ViTKeys.block(0, .relativePositionTable), blockTable), (ViTKeys.sharedRelativeTable, sharedTable)] {
            guard let shape else { continue }
            guard shape.count == 2, shape[1] > 0, let side = square(shape[0] - 3), side % 2 == 1 else {
                throw CheckpointError.notAViT(
                    path: ckpt.path,
                    what: "\(name) has shape \(shape); a relative position table is [(2g−1)² + 3, heads] for a g×g "
                    + "patch grid")
            }
            let g = (side + 1) / 2
            if let tg = tableGrid, tg != g || tableHeads != shape[1] {
                throw CheckpointError.badShape(
                    tensor: name, expected: [(2 * tg - 1) * (2 * tg - 1) + 3, tableHeads!], got: shape)
            }
            (tableGrid, tableHeads) = (g, shape[1])
        }
        if tableGrid != nil && !classToken {
            throw CheckpointError.notAViT(
                path: ckpt.path,
                what: "a relative position table without a class token (BEiT's tables hold class-token rows)")
        }
        // The patch grid is what is left of pos_embed after the prefix tokens' rows — all of them,
        // or none (DeiT III, DINOv2 with registers in timm: no_embed_class) — or, without pos_embed
        // (BEiT), the relative position table's.
        var slots = 0, grid = 0
        var imageSizeSource = "the position embedding"
        if let pe = t[ViTKeys.positions]?.shape {
            guard pe.count == 3, pe[0] == 1, pe[2] == dim, pe[1] >= 1 else {
                throw CheckpointError.badShape(tensor: ViTKeys.positions, expected: [1, prefix + 196, dim], got: pe)
            }
            // With registers a third arrangement: a row for the class token only (Facebook's and
            // Hugging Face's DINOv2 with registers insert the registers after the position embedding).
            if prefix > 0, let g = square(pe[1] - prefix) { (slots, grid) = (prefix, g) }
            else if let g = square(pe[1]) { (slots, grid) = (0, g) }
            else if registers > 0, classToken, let g = square(pe[1] - 1) { (slots, grid) = (1, g) }
            else {
                throw CheckpointError.notAViT(
                    path: ckpt.path,
                    what: "pos_embed holds \(pe[1]) rows, neither \(prefix) prefix rows plus a square grid nor a "
                    + "square grid alone (\(registers) register tokens)")
            }
            if let tg = tableGrid, tg != grid {
                throw CheckpointError.notAViT(
                    path: ckpt.path,
                    what: "pos_embed is for a \(grid)×\(grid) patch grid but the relative position table for "
                    + "\(tg)×\(tg)")
            }
        } else if let tg = tableGrid {
            grid = tg
        } else {
            // Neither: rotary positions, which fit any grid. The trained size comes from the
            // config or metadata, else the 224 px every timm rope ViT is built at.
            let stated: (Int, String)? = ckpt.config?.imageSize.map { ($0, "config.json image_size") }
                ?? ckpt.metadata["image_size"].flatMap(Int.init).map { ($0, "safetensors metadata image_size") }
            let (size, source) = stated ?? (224, "the 224 px timm builds rotary ViTs at (no position table)")
            guard size > 0, size % patch == 0 else { throw EngineError.imageSizeNotMultiple(size: size, patch: patch) }
            grid = size / patch
            imageSizeSource = source
        }
        var depth = 0
        while t[ViTKeys.block(depth, .norm1Weight)] != nil || t[ViTKeys.block(depth, .qkvWeight)] != nil { depth += 1 }
        guard depth > 0 else { throw CheckpointError.missingTensor(ViTKeys.block(0, .qkvWeight)) }
        if let extra = t.keys.compactMap({ LayoutMapper.blockPart($0)?.0 }).first(where: { $0 >= depth }) {
            throw CheckpointError.missingTensor(ViTKeys.block(depth, .norm1Weight) + " (blocks up to \(extra) exist)")
        }
        let fc1 = try shape(ViTKeys.block(0, .fc1Weight))
        guard fc1.count == 2, fc1[1] == dim else {
            throw CheckpointError.badShape(tensor: ViTKeys.block(0, .fc1Weight), expected: [4 * dim, dim], got: fc1)
        }
        // fc1 with twice the rows fc2 takes: a gated (SwiGLU) MLP, gate rows first.
        let fc2 = try shape(ViTKeys.block(0, .fc2Weight))
        let swiGLU = fc2.count == 2 && fc2[1] * 2 == fc1[0]
        let hidden = swiGLU ? fc2[1] : fc1[0]
        // Norms with a weight only: RMSNorm (AIMv2); the tensors cannot tell it from a LayerNorm
        // without bias, the family can.
        let normBias = t[ViTKeys.block(0, .norm1Bias)] != nil
        let finalNorm: FinalNorm = t[ViTKeys.FinalNorm.norm.weight] != nil ? .norm
            : (t[ViTKeys.FinalNorm.fcNorm.weight] != nil ? .fcNorm : .none)

        // A config.json that contradicts the tensors is refused, not half-believed.
        if let cfg = ckpt.config {
            for (name, said, found) in [("hidden_size", cfg.hiddenSize, dim), ("num_hidden_layers", cfg.layers, depth),
                                        ("patch_size", cfg.patchSize, patch)] {
                if let said, said != found {
                    throw CheckpointError.config(
                        path: ckpt.path, what: "config.json says \(name) \(said) but the weights hold \(found)")
                }
            }
            // image_size // patch_size patches a side (SigLIP so400m: 384 px, patch 14 → 27).
            if let said = cfg.imageSize, said / patch != grid {
                throw CheckpointError.config(
                    path: ckpt.path,
                    what: "config.json says image_size \(said) (\(said / patch) patches a side) but the position "
                    + "embedding or relative position table is for \(grid)")
            }
        }
        var h: Int, src: HeadsSource
        if let heads { h = heads; src = .option }
        else if let th = tableHeads { h = th; src = .table }
        else if let f = t[ViTKeys.ropeFrequencies]?.shape, f.count == 4, f[2] > 0 { h = f[2]; src = .frequencies }
        else if let p = t[ViTKeys.ropePeriods]?.shape, p.count == 1, p[0] > 0, dim % (4 * p[0]) == 0 {
            h = dim / (4 * p[0]); src = .periods
        }
        else if let m = ckpt.metadata["num_heads"], let v = Int(m) { h = v; src = .metadata }
        else if let v = ckpt.config?.heads { h = v; src = .config }
        else { h = max(1, dim / 64); src = .convention }
        guard h > 0, dim % h == 0 else { throw EngineError.headsDoNotDivide(heads: h, dim: dim, source: src) }
        if let th = tableHeads, th != h { throw EngineError.headsContradictTable(heads: h, source: src, table: th) }

        let preNorm = t[ViTKeys.preNormWeight] != nil
        // eps: the family's (below), unless config.json or the metadata says.
        var statedEps: Float?
        var epsSource = "family default"
        if let e = ckpt.config?.layerNormEps {
            (statedEps, epsSource) = (Float(e), "config.json " + (ckpt.config?.layerNormEpsKey ?? "layer_norm_eps")) }
        if let e = ckpt.metadata["layer_norm_eps"], let v = Float(e) {
            (statedEps, epsSource) = (v, "safetensors metadata layer_norm_eps") }
        // The activation the family's checkpoints were trained with, unless config.json or the
        // metadata says; the family itself is given or evident, never guessed (Family.swift).
        var activation = Activation.gelu
        var activationSource = "family default"
        for (act, source) in [
            (ckpt.config?.hiddenAct, "config.json hidden_act"),
            (ckpt.metadata["hidden_act"], "safetensors metadata hidden_act")] {
            guard let act else { continue }
            guard let a = Activation(name: act) else {
                throw EngineError.architecture(
                    "\(ckpt.path): \(source) '\(act)' is not supported (gelu, gelu_pytorch_tanh or quick_gelu)")
            }
            (activation, activationSource) = (a, source)
        }
        let stated = activationSource == "family default" ? nil : activation
        let evidence = FamilyEvidence(
            preNorm: preNorm, classToken: classToken, layerScale: t[ViTKeys.block(0, .layerScale1)] != nil,
            relative: blockTable != nil || sharedTable != nil, swiGLU: swiGLU, normBias: normBias,
            patchNorm: t[ViTKeys.patchNormWeight] != nil,
            keyBias: t[ViTKeys.block(0, .qkvBias)] != nil && !ckpt.keyBiasAbsent, registers: registers,
            layout: ckpt.layout,
            ignored: ckpt.ignored, statedActivation: stated,
            rotary: t[ViTKeys.positions] == nil && blockTable == nil && sharedTable == nil,
            learnedFrequencies: t[ViTKeys.ropeFrequencies] != nil,
            otherRotaryTensor: (Array(t.keys) + ckpt.ignored).sorted().first {
                ($0.contains("freqs") || $0.contains("rope"))
                    && ![ViTKeys.ropePeriods, ViTKeys.ropeFrequencies, ViTKeys.ropeCos, ViTKeys.ropeSin].contains($0)
            }.map { "\($0)" },
            evaStyleWithoutClassRow: ckpt.layerScaleAsGamma && ckpt.location == "top level" && slots == 0
                && t[ViTKeys.positions] != nil)
        let (family, familySource) = try ModelFamily.resolve(evidence, given: given, metadata: ckpt.metadata["family"],
                                                             path: ckpt.path)
        // A gated MLP's gate is SiLU in every family that has one (DINOv3 S+/H+ too).
        if stated == nil { activation = swiGLU ? .silu : family.defaultActivation }
        if swiGLU != (activation == .silu) {
            throw EngineError.architecture(
                "\(ckpt.path): \(swiGLU ? "a gated (SwiGLU) MLP" : "a plain MLP") with \(activation.rawValue) "
                + "(\(activationSource)); vitlens runs SwiGLU with silu and plain MLPs with a GELU")
        }
        // What the family says about what the tensors cannot show (Families/Family+<Name>.swift).
        let definition = family.definition
        // The trained size of a family built at another than 224 px (timm's rope reg-gap ViTs: 256),
        // where the file does not say (the rotary grid is rescaled to it).
        if imageSizeSource.hasPrefix("the 224 px") && definition.trainedSize != 224 {
            grid = definition.trainedSize / patch
            imageSizeSource = "the \(definition.trainedSize) px \(family.title) checkpoints are built at (no "
                + "position table)"
        }
        let eps = statedEps ?? definition.eps
        let run = imageSize ?? grid * patch
        guard run > 0, run % patch == 0 else {
            throw EngineError.imageSizeNotMultiple(size: run, patch: patch)
        }
        var config = ViTConfig(dim: dim, depth: depth, heads: h, headsSource: src, patch: patch, grid: grid,
                               mlpHidden: hidden, prefixTokens: prefix,
                               finalNorm: finalNorm, eps: eps, imageSize: run)
        config.epsSource = epsSource
        config.registers = registers
        config.positionSlots = slots
        config.layerScale = t[ViTKeys.block(0, .layerScale1)] != nil
        config.preNorm = preNorm
        config.mlp = swiGLU ? .swiGLU(innerNorm: t[ViTKeys.block(0, .mlpNormWeight)] != nil) : .plain(activation)
        config.activationSource = activationSource
        config.modelFamily = family
        config.familySource = familySource
        config.imageSizeSource = imageSizeSource
        if let rotary = family.rotary(trainedGrid: config.grid) {
            // Each head's width is split into x and y frequency bands of pairs: a multiple of 4.
            guard config.headDim % 4 == 0 else {
                throw EngineError.architecture(
                    "\(ckpt.path): rotary positions need a head width divisible by 4, got \(config.headDim)")
            }
            if let said = ckpt.config?.ropeTheta, said != rotary.theta {
                throw CheckpointError.config(
                    path: ckpt.path, what: "config.json says rope_theta \(said) but \(family.title) runs with θ = "
                    + "\(rotary.theta) (another θ is not supported)")
            }
            config.positions = .rotary(rotary, withTable: t[ViTKeys.positions] != nil)
        }
        if let f = t[ViTKeys.ropeFrequencies]?.shape,
           f != [2, config.depth, config.heads, config.headDim / 2] {
            throw CheckpointError.badShape(tensor: ViTKeys.ropeFrequencies,
                                           expected: [2, config.depth, config.heads, config.headDim / 2], got: f)
        }
        for (name, isCos) in [(ViTKeys.ropeCos, true), (ViTKeys.ropeSin, false)] {
            guard let raw = t[name] else { continue }
            try checkRotaryBuffer(raw, name: name, cosine: isCos, config: config, path: ckpt.path)
        }
        if let raw = t[ViTKeys.ropePeriods] {
            // Facebook's DINOv3 stores its periods θ^(4k/D) in bfloat16; timm recomputes them, and so
            // does vitlens, after checking that they are the family's.
            let D = config.headDim, stored = try raw.floats(name: ViTKeys.ropePeriods)
            guard let spec = config.rotary, spec.coordinates == .centered, stored.count == D / 4 else {
                throw EngineError.architecture(
                    "\(ckpt.path): \(ViTKeys.ropePeriods) (\(stored.count) values) does not fit "
                    + "\(config.rotary == nil ? "a model without rotary positions" : "this model's \(D / 4) periods")")
            }
            for (k, p) in stored.enumerated() {
                let want = pow(spec.theta, 4 * Double(k) / Double(D))
                guard abs(Double(p) - want) <= 4e-3 * want else {
                    throw EngineError.architecture(
                        "\(ckpt.path): \(ViTKeys.ropePeriods)[\(k)] is \(p), but θ = \(Int(spec.theta)) gives "
                        + "\(want) (a DINOv3 with another θ is not supported)")
                }
            }
        }
        config.classToken = classToken
        if blockTable != nil || sharedTable != nil {
            config.positions = .relative(perBlock: blockTable != nil, shared: sharedTable != nil,
                                         withTable: t[ViTKeys.positions] != nil)
        }
        config.patchBias = t[ViTKeys.patchBias] != nil
        let keyBias = !(blockTable != nil || sharedTable != nil || ckpt.layout == .beit
            || ckpt.layout == .huggingFaceBEiT || ckpt.keyBiasAbsent)
        config.qkvBiases = t[ViTKeys.block(0, .qkvBias)] == nil ? .none : keyBias ? .full : .qv
        config.norm = definition.norm
        config.positionResampling = definition.resampling
        config.attentionNorm = t[ViTKeys.block(0, .attentionNormWeight)] != nil
        config.patchNorm = t[ViTKeys.patchNormWeight] != nil
        (config.separateQKV, config.separateGLU) = (ckpt.separateQKV, ckpt.separateGLU)
        // Only bias-free families' blocks may lack biases; elsewhere a missing one is a missing tensor.
        config.projectionBias = !definition.biasFreeBlocks || t[ViTKeys.block(0, .projBias)] != nil
        config.mlpBias = !definition.biasFreeBlocks || t[ViTKeys.block(0, .fc1Bias)] != nil
        config.saveNames = definition.saveNames(config)
        if config.patchNorm && config.norm == .layerNorm && t[ViTKeys.patchNormBias] == nil {
            throw CheckpointError.missingTensor(ViTKeys.patchNormBias)
        }
        return config
    }
}
