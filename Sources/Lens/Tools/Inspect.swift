import Foundation

/// What `vitlens inspect` shows of a checkpoint.
public struct CheckpointSummary {
    public let model: AnalysisModel
    /// Ignored keys summarised by prefix: `model.decoder_blocks.*` (24), `optimizer` …
    public let ignored: [(String, Int)]

    /// Of a loaded model (loading validated every shape and value).
    public init(_ model: AnalysisModel) {
        self.model = model
        ignored = ignoredSummary(model.checkpoint.ignored)
    }

    public var json: JSONValue {
        let ck = model.checkpoint
        return .object([
            ("path", .string(ck.path)), ("format", .string(ck.format)), ("layout", .string(ck.layout.rawValue)),
            ("state_dict", .string(ck.location)), ("architecture", model.architecture.json),
            ("ignored", .object(ignored.map { ($0.0, .int($0.1)) })),
            ("metadata", .object(ck.metadata.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })),
                ("sha256", .string(model.sha256)),
        ])
    }

    public var lines: [(String, String)] {
        let ck = model.checkpoint, c = model.config
        var family = c.family + (c.layerScale ? ", LayerScale" : "")
        family += c.registers > 0 ? ", \(c.registers) register tokens" : ""
        family += !c.classToken ? ", no class token"
            : c.positionSlots == 0 && c.absolutePositions ? ", no position embedding for the class token" : ""
        if c.relativePositionBias {
            let tables = [c.relativeBlockTables ? "per block" : nil, c.relativeSharedTable ? "shared" : nil]
            family += ", relative position bias " + tables.compactMap { $0 }.joined(separator: " and ")
        }
        family += c.absolutePositions ? "" : ", no absolute position embedding"
        var out: [(String, String)] = [
            ("checkpoint", ck.path), ("format", ck.format), ("layout", ck.layout.rawValue), ("state dict", ck.location),
            ("family", family), ("", "runs as --family \(c.modelFamily.rawValue), from \(c.familySource)"),
        ]
        if let r = c.rotary {
            out.append(("", "rotary positions on q and k of the patches: \(r.summary); trained at "
                            + "\(c.checkpointImageSize) px, from \(c.imageSizeSource)"))
        }
        let qkv = c.qkvBias ? (c.keyBias ? "yes" : "q and v only") : "no"
        let mlp = c.swiGLU ? "SwiGLU \(c.mlpHidden)" + (c.mlpNorm ? " with an inner norm" : "") : "MLP \(c.mlpHidden)"
        var extras = [c.attentionNorm ? "a norm on the attention output" : nil,
                      c.patchNorm ? "a norm on the patch embeddings" : nil,
                      c.projectionBias ? nil : "no projection bias",
                      c.mlpBias ? nil : "no MLP biases"].compactMap { $0 }
        extras = extras.isEmpty ? [] : [extras.joined(separator: ", ")]
        out += [
            ("architecture",
                "ViT, width \(c.dim), depth \(c.depth), patch \(c.patch), image \(c.checkpointImageSize) "
                + "(\(c.grid)x\(c.grid) patches), \(mlp)"),
            ("", "qkv bias \(qkv), final norm \(c.finalNorm.rawValue), prefix tokens \(c.prefixTokens), "
                + "\(c.norm.rawValue) eps \(c.eps) (\(c.epsSource))"),
        ] + extras.map { ("", $0) } + [
            ("activation", "\(c.activation.rawValue), from \(c.activationSource)"),
            ("heads", "\(c.heads) (head dim \(c.headDim)), from \(model.headsSource)"),
            ("parameters", "\(c.parameterCount) in the forward pass"),
            ("ignored", ignored.isEmpty ? "nothing" : ignored.map { "\($0.0) (\($0.1))" }.joined(separator: ", ")),
        ]
        out += ck.metadata.sorted { $0.key < $1.key }.enumerated().map { i, kv in
            (i == 0 ? "metadata" : "", "\(kv.key) = \(kv.value)")
        }
        return out + [("sha256", model.sha256)]
    }

}

/// Wrapper prefixes (module., model., base_encoder., backbone.) stay in the group's name.
func ignoredSummary(_ keys: [String]) -> [(String, Int)] {
    let wrappers: Set<String> = [
        "module", "model", "base_encoder", "backbone", "encoder", "vit", "deit", "beit", "dinov2", "vision_model"]
    var counts: [String: Int] = [:]
    var order: [String] = []
    for k in keys {
        var parts = k.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        var head: [String] = []
        while parts.count > 1, wrappers.contains(parts[0]) { head.append(parts.removeFirst()) }
        head.append(parts.removeFirst())
        let group = head.joined(separator: ".") + (parts.isEmpty ? "" : ".*")
        if counts[group] == nil { order.append(group) }
        counts[group, default: 0] += 1
    }
    return order.map { ($0, counts[$0]!) }
}
