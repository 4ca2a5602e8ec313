import Checkpoint
import Engine

// How each family is told (given, or evident from the tensors) and what it says about what the
// tensors cannot show: the activation, rotary positions, the checks that it fits.

extension ModelFamily {
    /// The MLP activation the family's checkpoints were trained with.
    public var defaultActivation: ViTConfig.Activation {
        switch self {
        case .clip: return .quickGelu
        case .siglip, .siglip2: return .geluTanh
        case .eva02, .aimv2: return .silu
        default: return .gelu
        }
    }

    /// The rotary positions the family's checkpoints were trained with (nil: none), for a model
    /// trained on a g×g grid.
    public func rotary(trainedGrid g: Int) -> RotarySpec? {
        switch self {
        case .ropeVit: return .timmAxial
        case .dinov3: return .dinov3
        case .ropeVitGap: return .timmRegGap(trainedGrid: g)
        case .ropeVitMixed: return .timmMixed
        case .perceptionEncoder: return .perceptionEncoder(trainedGrid: g)
        case .eva02: return .eva02
        default: return nil
        }
    }
    var isRotary: Bool { rotary(trainedGrid: 1) != nil }
    /// Rotary positions beside an absolute position table (EVA-02, PE), not instead of one.
    var hasAbsoluteAndRotary: Bool { [.eva02, .perceptionEncoder, .ropeVit, .ropeVitMixed].contains(self) }
}

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
    /// A family vitlens recognises but cannot run yet.
    case unsupported(path: String, family: ModelFamily, source: String)
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
        case let .unsupported(path, family, source):
            return "\(path): \(family.title) (\(source)) uses 2-D rotary position embeddings, which vitlens does "
                + "not run yet; running it as CLIP would give wrong numbers"
        case let .rotaryNotYet(path, what):
            return "\(path): \(what): rotary position embeddings of a kind vitlens does not run yet (it runs "
                + "timm's axial rope ViTs, --family rope-vit)"
        case let .noFamily(path, what):
            return "\(path): \(what): no family vitlens runs has these tensors (say one with --family if it is one)"
        case let .unknown(path, name):
            return "\(path): safetensors metadata family '\(name)' is not one of \(ModelFamily.names)"
        }
    }
}

extension ModelFamily {
    /// The family of a model: given (`--family`, then a metadata `family`), or evident from the
    /// tensors, the layout or a stated activation; otherwise an error naming the candidates.
    /// Returns the family and where it came from.
    static func resolve(_ e: FamilyEvidence, given: ModelFamily?, metadata: String?,
                        path: String) throws -> (ModelFamily, String) {
        if let given { return (try given.checked(e, source: "--family", path: path), "--family") }
        if let metadata {
            guard let f = ModelFamily(rawValue: metadata) else { throw FamilyError.unknown(path: path, name: metadata) }
            return (try f.checked(e, source: "safetensors metadata", path: path), "safetensors metadata family")
        }
        if e.relative { return (.beit, "the tensors (relative position tables)") }
        if let other = e.otherRotaryTensor {
            throw FamilyError.rotaryNotYet(path: path, what: other)
        }
        if e.learnedFrequencies {
            guard e.classToken, e.registers == 0, e.layerScale, !e.preNorm, !e.swiGLU else {
                throw FamilyError.noFamily(path: path, what: "learned rotary frequencies (rope.freqs) in a model that "
                    + "is not timm's RoPE-Mixed ViT (a class token, LayerScale, no registers)")
            }
            return (.ropeVitMixed, "the tensors (learned rotary frequencies: timm's *_rope_mixed_*)")
        }
        if !e.normBias {
            guard e.swiGLU, e.patchNorm, !e.classToken, !e.rotary else {
                throw FamilyError.noFamily(
                    path: path, what: e.rotary && e.patchNorm ? "norms without a bias and no position table (AIMv2's "
                        + "native-resolution models, with fixed sin-cos positions, are not run yet)"
                        : "norms without a bias")
            }
            return (.aimv2, "the tensors (norms without a bias, one on the patch embeddings, a SwiGLU MLP: AIMv2)")
        }
        if e.swiGLU && !e.rotary && !e.preNorm {
            guard e.classToken, e.registers == 0, !e.patchNorm, !e.keyBias else {
                throw FamilyError.noFamily(path: path, what: "a SwiGLU MLP beside a position table, with "
                    + (e.keyBias ? "a k bias (EVA-02 has q and v biases only)" : "no class token or with registers"))
            }
            return (.eva02, "the tensors (a SwiGLU MLP beside a position table and a class token: EVA-02)")
        }
        if e.rotary {
            // DINOv3: a class token and registers; timm's rope ViTs: a class token, LayerScale and
            // nothing else; anything more or less is another rotary family.
            if e.classToken, e.registers > 0, e.layerScale, !e.preNorm {
                return (.dinov3, "the tensors (no position table, a class token and registers: DINOv3)")
            }
            if !e.classToken, e.registers > 0, e.layerScale, !e.preNorm {
                return (.ropeVitGap, "the tensors (no position table, registers without a class token: timm's "
                    + "*_rope_reg*_gap_*)")
            }
            guard e.classToken, e.registers == 0, !e.preNorm, e.layerScale else {
                let what = e.preNorm ? "CLIP's ln_pre" : e.registers > 0 ? "\(e.registers) registers (DINOv3, timm's "
                    + "rope_reg*_gap)" : !e.classToken ? "no class token" : "no LayerScale"
                throw FamilyError.rotaryNotYet(path: path, what: "no position table, and " + what)
            }
            return (.ropeVit, "the tensors (no position table, a class token, LayerScale: timm's *_rope_* ViTs)")
        }
        if e.preNorm {
            if e.layout == .huggingFaceCLIP { return (.clip, "the Hugging Face CLIP folder") }
            if e.hasAttentionPool {
                return (.perceptionEncoder, "the tensors (an attention-pooling head beside CLIP's ln_pre: PE core)")
            }
            if e.statedActivation == .quickGelu { return (.clip, "the stated activation (QuickGELU)") }
            throw FamilyError.ambiguous(
                path: path, candidates: [.clip, .perceptionEncoder],
                why: "CLIP's tensors (a LayerNorm before the first block) with nothing that says which model wrote "
                    + "them")
        }
        if !e.classToken {
            if e.layout == .huggingFaceSigLIP { return (.siglip, "the Hugging Face SigLIP folder") }
            if e.layout == .huggingFaceSigLIP2 {
                return (.siglip2, "the Hugging Face SigLIP 2 folder (a linear patch embedding: NaFlex)") }
            if e.registers > 0 { return (.vitGap, "the tensors (registers without a class token; SigLIP has none)") }
            if e.hasAttentionPool { return (.siglip, "the tensors (an attention-pooling head)") }
            switch e.statedActivation {
            case .geluTanh?: return (.siglip, "the stated activation (tanh GELU)")
            case .gelu?: return (.vitGap, "the stated activation (exact GELU)")
            default:
                throw FamilyError.ambiguous(path: path, candidates: [.siglip, .vitGap],
                                            why: "no class token, no registers and no attention-pooling head")
            }
        }
        if e.evaStyleWithoutClassRow && e.classToken && e.registers == 0 {
            throw FamilyError.ambiguous(
                path: path, candidates: [.deit3, .ropeVit],
                why: "DeiT III's tensors (LayerScale as gamma_1/gamma_2, no position row for the class token) in a "
                    + "top-level state dict, as timm's rope ViTs with absolute positions (*_rope_ape_*) save them")
        }
        if e.layerScale { return (e.registers > 0 ? .dinov2 : .deit3, "the tensors (LayerScale)") }
        return (.vit, "the tensors")
    }

    /// Self, if the tensors can be this family; else why not.
    func checked(_ e: FamilyEvidence, source: String, path: String) throws -> ModelFamily {
        func no(_ why: String) -> FamilyError { .contradicts(path: path, family: self, source: source, why: why) }
        if e.normBias == (self == .aimv2) {
            throw no(e.normBias ? "its norms have biases (AIMv2's RMSNorms have none)" : "its norms have no bias")
        }
        if e.swiGLU && ![.eva02, .aimv2, .dinov3].contains(self) { throw no("it has a gated (SwiGLU) MLP") }
        if !e.swiGLU && (self == .eva02 || self == .aimv2) { throw no("it has a plain MLP, not a SwiGLU") }
        if self == .eva02 && e.keyBias { throw no("it has a k bias (EVA-02 has q and v biases only)") }
        // A rope ViT may also have absolute positions (timm's *_rope_ape_*); DINOv3 has none.
        if e.rotary && !isRotary || !e.rotary && (self == .dinov3 || self == .ropeVitGap) {
            throw no(e.rotary ? "it has no position table (rotary positions: rope-vit or dinov3)"
                     : "it has a position table")
        }
        if self == .dinov3 && e.registers == 0 { throw no("it has no registers, which DINOv3 has") }
        if self == .ropeVitGap && (e.classToken || e.registers == 0) {
            throw no(e.classToken ? "it has a class token" : "it has no registers")
        }
        if self == .ropeVit && e.registers > 0 { throw no("it has registers (dinov3?)") }
        if e.learnedFrequencies != (self == .ropeVitMixed) {
            throw no(e.learnedFrequencies ? "it has learned rotary frequencies (rope.freqs: rope-vit-mixed)"
                     : "it has no learned rotary frequencies (rope.freqs)")
        }
        if e.relative != (self == .beit) {
            throw no(e.relative ? "it has relative position tables (beit)" : "it has no relative position tables")
        }
        if e.preNorm != (self == .clip || self == .perceptionEncoder) {
            throw no(e.preNorm ? "it has CLIP's ln_pre (clip or pe)" : "it has no ln_pre, which CLIP and PE have")
        }
        switch self {
        case .siglip where e.classToken || e.registers > 0, .siglip2 where e.classToken || e.registers > 0:
            throw no(
                e.classToken ? "it has a class token, which SigLIP has not" : "it has registers, which SigLIP has not")
        case .vitGap where e.classToken:
            throw no("it has a class token")
        case .aimv2 where e.classToken:
            throw no("it has a class token, which AIMv2 has not")
        case .vit, .deit3, .dinov2, .clip, .beit, .ropeVit, .dinov3, .eva02, .perceptionEncoder, .ropeVitMixed:
            if !e.classToken { throw no("it has no class token") }
            if (self == .deit3 || self == .dinov2) && !e.layerScale { throw no("it has no LayerScale") }
        default: break
        }
        return self
    }
}
