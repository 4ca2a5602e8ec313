import Checkpoint
import Engine

/// What a model's tensors show that only some families have: a `--family` whose family does not
/// allow one the tensors have, or requires one they lack, is refused naming it.
/// In the order a contradiction is looked for: the most telling first.
enum Trait: CaseIterable {
    case relativeTables, lnPre, learnedFrequencies, biasFreeNorms, gatedMLP, noPositionTable, keyBias, classToken
    case registers, layerScale

    /// As an error says that the tensors have it, or lack it.
    var clauses: (has: String, lacks: String) {
        switch self {
        case .classToken: return ("it has a class token", "it has no class token")
        case .registers: return ("it has registers", "it has no registers")
        case .layerScale: return ("it has LayerScale", "it has no LayerScale")
        case .relativeTables: return ("it has relative position tables", "it has no relative position tables")
        case .lnPre: return ("it has CLIP's ln_pre", "it has no ln_pre")
        case .noPositionTable: return ("it has no position table (rotary positions)", "it has a position table")
        case .learnedFrequencies:
            return ("it has learned rotary frequencies (rope.freqs)",
                    "it has no learned rotary frequencies (rope.freqs)")
        case .gatedMLP: return ("it has a gated (SwiGLU) MLP", "it has a plain MLP, not a SwiGLU")
        case .biasFreeNorms: return ("its norms have no bias", "its norms have biases")
        case .keyBias: return ("it has a k bias", "it has no k bias")
        }
    }

    func present(in e: FamilyEvidence) -> Bool {
        switch self {
        case .classToken: return e.classToken
        case .registers: return e.registers > 0
        case .layerScale: return e.layerScale
        case .relativeTables: return e.relative
        case .lnPre: return e.preNorm
        case .noPositionTable: return e.rotary
        case .learnedFrequencies: return e.learnedFrequencies
        case .gatedMLP: return e.swiGLU
        case .biasFreeNorms: return !e.normBias
        case .keyBias: return e.keyBias
        }
    }
}

/// One model family, defined in its own file (Families/Family+<Name>.swift): which tensors it
/// has, when they make it evident, and what it says about what tensors cannot show. `registry`
/// lists them in the order their evidence is weighed.
struct FamilyDefinition {
    let family: ModelFamily
    /// Traits its checkpoints must have, and may have (`required` ⊆ `allowed`).
    var required: Set<Trait> = []
    var allowed: Set<Trait> = [.classToken, .registers, .layerScale, .keyBias]
    /// When the tensors make it evident: the reason (for `inspect`), nil when they do not; throws
    /// when they point here but fit no family, or fit this one and another alike (asks).
    var evident: (FamilyEvidence, String) throws -> String? = { _, _ in nil }
    /// The MLP activation its checkpoints were trained with (SwiGLU's gate is SiLU in every family).
    var activation: ViTConfig.Activation = .gelu
    /// Its norms' eps where no config or metadata says (timm's default 1e-6 unless the family's
    /// own code differs).
    var eps: Float = 1e-6
    var norm: ViTConfig.Norm = .layerNorm
    /// Its rotary positions for a model trained on a g×g grid (nil: none).
    var rotary: (Int) -> RotarySpec? = { _ in nil }
    /// The image size its checkpoints are trained at, where neither a position table nor a config
    /// says (rotary positions alone).
    var trainedSize = 224
    /// How its absolute position table is resized to the run's grid.
    var resampling: ViTConfig.PositionResampling = .timmBicubic
    /// Its blocks' linear layers have no biases (AIMv2): an absent one is no missing tensor.
    var biasFreeBlocks = false
    /// How timm's class for it names what `finetune --save` writes: by default timm's Eva and Beit
    /// conventions where the model has their features (q/v biases, rotary positions), SwiGLU's
    /// layers apart (timm's SwiGLU).
    var saveNames: (ViTConfig) -> ViTConfig.SaveNames = { c in
        .init(layerScaleAsGamma: !c.keyBias || c.rotary != nil, qvBiases: !c.keyBias, separateGLU: c.swiGLU)
    }
    /// The key layouts of its authors' files that only it has, taught to the checkpoint loader
    /// (`CheckpointLoader.loadModel`).
    var layouts: [LayoutRenamer] = []

    /// Why tensors with these traits cannot be this family (nil: they can): the first trait it
    /// does not allow (and the families that have it), or requires but the tensors lack.
    func contradiction(_ e: FamilyEvidence) -> String? {
        func list(_ names: [String], _ last: String) -> String {
            names.count < 2 ? names.joined() : names.dropLast().joined(separator: ", ") + " \(last) " + names.last!
        }
        for t in Trait.allCases {
            let has = t.present(in: e)
            if has && !allowed.contains(t) {
                let owners = FamilyDefinition.registry.filter { $0.allowed.contains(t) }.map(\.family.rawValue)
                return t.clauses.has + ", which \(family.title) has not"
                    + (owners.count <= 4 ? " (" + list(owners, "or") + ")" : "")
            }
            if !has && required.contains(t) {
                let owners = FamilyDefinition.registry.filter { $0.required.contains(t) }.map(\.family.title)
                return t.clauses.lacks + (owners.count <= 4
                    ? ", which " + list(owners, "and") + (owners.count == 1 ? " has" : " have") : "")
            }
        }
        return nil
    }

    /// Every family vitlens runs, in the order their evidence is weighed (the first evident wins).
    static let registry: [FamilyDefinition] = [
        .beit, .ropeVitMixed, .aimv2, .eva02, .dinov3, .ropeVitGap, .ropeVit, .perceptionEncoder, .clip,
        .siglip2, .siglip, .vitGap, .dinov2, .deit3, .vit,
    ]

    /// Every family's own key layouts.
    static let layouts = registry.flatMap(\.layouts)

    static func of(_ family: ModelFamily) -> FamilyDefinition {
        registry.first { $0.family == family }!
    }
}

extension ModelFamily {
    /// The family's definition (Families/Family+<Name>.swift).
    var definition: FamilyDefinition { FamilyDefinition.of(self) }

    /// The MLP activation the family's checkpoints were trained with.
    public var defaultActivation: ViTConfig.Activation { definition.activation }

    /// The rotary positions the family's checkpoints were trained with (nil: none), for a model
    /// trained on a g×g grid.
    public func rotary(trainedGrid g: Int) -> RotarySpec? { definition.rotary(g) }

    /// The family of a model: given (`--family`, then a metadata `family`), or evident from the
    /// tensors (the registry's order); otherwise an error naming the candidates. Returns the
    /// family and where it came from.
    static func resolve(_ e: FamilyEvidence, given: ModelFamily?, metadata: String?,
                        path: String) throws -> (ModelFamily, String) {
        if let given { return (try given.checked(e, source: "--family", path: path), "--family") }
        if let metadata {
            guard let f = ModelFamily(rawValue: metadata) else { throw FamilyError.unknown(path: path, name: metadata) }
            return (try f.checked(e, source: "safetensors metadata", path: path), "safetensors metadata family")
        }
        if let other = e.otherRotaryTensor { throw FamilyError.rotaryNotYet(path: path, what: other) }
        for d in FamilyDefinition.registry {
            if let why = try d.evident(e, path) { return (d.family, why) }
        }
        throw FamilyError.noFamily(path: path, what: "tensors no family's rules account for")
    }

    /// Self, if the tensors can be this family; else why not.
    func checked(_ e: FamilyEvidence, source: String, path: String) throws -> ModelFamily {
        if let why = definition.contradiction(e) {
            throw FamilyError.contradicts(path: path, family: self, source: source, why: why)
        }
        return self
    }
}

extension CheckpointLoader {
    /// A model checkpoint, read with every family's key layouts (Families/Family+<Name>.swift).
    public static func loadModel(path: String) throws -> LoadedCheckpoint {
        try load(path: path, renamers: FamilyDefinition.layouts)
    }
}
