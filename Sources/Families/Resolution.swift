import Checkpoint
import Engine

// What the tensors show of a model, and the errors of deciding its family (the families
// themselves: FamilyDefinition.swift and one Family+<Name>.swift each).

/// What the tensors show of a model, for deciding its family.
struct FamilyEvidence {
    var preNorm, classToken, layerScale, relative: Bool
    /// A gated MLP (fc1 twice as wide as fc2's input); norms with a bias; a norm on the patch
    /// embeddings.
    var swiGLU, normBias, patchNorm: Bool
    /// The key projection has a bias of its own (EVA-02 has q and v biases only).
    var keyBias: Bool
    var registers: Int
    var layout: Layout
    /// Keys the loader ignored (a MAP head `attn_pool.*` tells SigLIP, or PE-core's in a CLIP layout).
    var ignored: [String]
    /// `hidden_act` from config.json or safetensors metadata, if given.
    var statedActivation: ViTConfig.Activation?
    /// Neither an absolute nor a relative position table: the positions are rotary.
    var rotary: Bool
    /// timm's learned rotary frequencies (`rope.freqs`, `rope_mixed`).
    var learnedFrequencies: Bool
    /// Another tensor of rotary frequencies, of a kind vitlens does not run.
    var otherRotaryTensor: String?
    /// LayerScale named gamma_1/gamma_2 in a top-level state dict, and a position table without a
    /// class row: DeiT III's tensors as timm's Eva saves its rope ViTs with absolute positions too.
    var evaStyleWithoutClassRow: Bool

    var hasAttentionPool: Bool { ignored.contains { $0.contains("attn_pool") } }
}

/// A model whose family cannot be settled, or does not fit what the tensors show.
public enum FamilyError: Error, CustomStringConvertible, Equatable {
    /// Several families share these tensors; `--family` settles it.
    case ambiguous(path: String, candidates: [ModelFamily], why: String)
    /// A family given (by `source`) that the tensors contradict.
    case contradicts(path: String, family: ModelFamily, source: String, why: String)
    /// A metadata `family` that names no family.
    case unknown(path: String, name: String)
    /// Rotary positions of a kind vitlens does not run yet, and what gave them away.
    case rotaryNotYet(path: String, what: String)
    /// Tensors no family vitlens runs has together.
    case noFamily(path: String, what: String)

    public var description: String {
        switch self {
        case let .ambiguous(path, candidates, why):
            let names = candidates.map { "\($0.rawValue) (\($0.title))" }.joined(separator: " or ")
            return "\(path): \(why); it could be \(names), which give different numbers: say which with "
                + "--family \(candidates.map(\.rawValue).joined(separator: "|"))"
        case let .contradicts(path, family, source, why):
            return "\(path): \(source) says \(family.rawValue) (\(family.title)), but \(why)"
        case let .rotaryNotYet(path, what):
            let rotary = ModelFamily.allCases.filter { $0.rotary(trainedGrid: 1) != nil }.map(\.rawValue)
            return "\(path): \(what): rotary position embeddings of a kind vitlens does not run yet (it runs "
                + "those of --family \(rotary.joined(separator: ", ")))"
        case let .noFamily(path, what):
            return "\(path): \(what): no family vitlens runs has these tensors (say one with --family if it is one)"
        case let .unknown(path, name):
            return "\(path): safetensors metadata family '\(name)' is not one of \(ModelFamily.names)"
        }
    }
}
