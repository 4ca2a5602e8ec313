import ArgumentParser
import Checkpoint
import Engine
import Foundation
import Render
import VitLensCore

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a checkpoint holds: format, layout, architecture, heads, ignored keys, SHA-256.")

    @Argument(help: "Checkpoint: .safetensors, a torch.save archive (.pth, .pth.tar, .bin, .pt), or a Hugging Face folder.")
    var checkpoint: String

    @Option(help: "Number of attention heads (see SPEC §2).")
    var heads: Int?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        if let heads, heads < 1 { throw ValidationError("--heads must be at least 1") }
    }

    func run() throws {
        let ckpt = try CheckpointLoader.load(path: checkpoint)
        let c = try namingFile(checkpoint) { () throws -> ViTConfig in
            let c = try ViTConfig.infer(from: ckpt, heads: heads)
            _ = try ViTWeights(checkpoint: ckpt, config: c)  // validates every shape and value
            return c
        }
        let groups = ignoredSummary(ckpt.ignored)
        let sha = ckpt.sha256()
        if json {
            let obj: JSONValue = .object([
                ("path", .string(ckpt.path)), ("format", .string(ckpt.format)), ("layout", .string(ckpt.layout.rawValue)),
                ("state_dict", .string(ckpt.location)), ("architecture", architectureJSON(c)),
                ("ignored", .object(groups.map { ($0.0, .int($0.1)) })), ("sha256", .string(sha)),
            ])
            print(obj.render())
            return
        }
        print("checkpoint    \(ckpt.path)")
        print("format        \(ckpt.format)")
        print("layout        \(ckpt.layout.rawValue)")
        print("state dict    \(ckpt.location)")
        print("architecture  ViT, width \(c.dim), depth \(c.depth), patch \(c.patch), image \(c.checkpointImageSize) (\(c.grid)x\(c.grid) patches), MLP \(c.mlpHidden)")
        print("              qkv bias \(c.qkvBias ? "yes" : "no"), final norm \(c.finalNorm.rawValue), prefix tokens \(c.prefixTokens), LayerNorm eps \(c.eps)")
        print("heads         \(c.heads) (head dim \(c.headDim)), from \(c.headsSource.rawValue)")
        print("parameters    \(c.parameterCount) in the forward pass")
        if groups.isEmpty {
            print("ignored       nothing")
        } else {
            print("ignored       " + groups.map { "\($0.0) (\($0.1))" }.joined(separator: ", "))
        }
        print("sha256        \(sha)")
    }
}

/// Ignored keys summarised by prefix: `model.decoder_blocks.*` (24), `optimizer` …
/// Wrapper prefixes (module., model., base_encoder., backbone.) stay in the group's name.
func ignoredSummary(_ keys: [String]) -> [(String, Int)] {
    let wrappers: Set<String> = ["module", "model", "base_encoder", "backbone", "encoder", "vit", "deit"]
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

func architectureJSON(_ c: ViTConfig) -> JSONValue {
    .object([
        ("embed_dim", .int(c.dim)), ("depth", .int(c.depth)), ("heads", .int(c.heads)),
        ("heads_source", .string(c.headsSource.rawValue)), ("patch_size", .int(c.patch)),
        ("checkpoint_image_size", .int(c.checkpointImageSize)), ("image_size", .int(c.imageSize)),
        ("tokens", .int(c.tokens)), ("prefix_tokens", .int(c.prefixTokens)), ("mlp_hidden", .int(c.mlpHidden)),
        ("qkv_bias", .bool(c.qkvBias)), ("final_norm", .string(c.finalNorm.rawValue)),
        ("layer_norm_eps", .double(Double(c.eps))), ("parameters", .int(c.parameterCount)),
    ])
}
