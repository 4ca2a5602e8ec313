import Analysis
import ArgumentParser
import Engine
import Families
import Foundation
import Images
import Lens
import Train
import VitLensCore

extension ResizeMode: ExpressibleByArgument {}
extension ModelFamily: ExpressibleByArgument {}
extension RepresentationKind: ExpressibleByArgument {}
extension TokenSelection: ExpressibleByArgument {}
extension DistanceConvention: ExpressibleByArgument {}
extension ProbePooling: ExpressibleByArgument {}
/// `--shard i/n`, or `auto`.
enum ShardArgument: ExpressibleByArgument {
    case fixed(ShardSpec)
    case auto
    init?(argument: String) {
        if argument == "auto" { self = .auto; return }
        guard let spec = ShardSpec(parsing: argument) else { return nil }
        self = .fixed(spec)
    }
}

/// `--shard i/n` or `--shard auto` (`--shards n` in a Kubernetes Indexed Job): a shard of a run
/// that `vitlens merge` puts back together (docs/cluster.md).
/// --rep: which representation of every block the taps take (cka, similarity, extract).
struct RepresentationOptions: ParsableArguments {
    @Option(help: "normed (blocks[i].norm1 outputs, then the final norm) or residual (the raw residual stream).")
    var rep: RepresentationKind = .normed
}

struct ShardOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "i/n: process every n-th batch starting at i and write partial.json for `vitlens merge`; auto: i and n from "
        + "a Slurm job array (SLURM_ARRAY_TASK_ID, _MIN, _MAX) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, "
        + "with --shards)."))
    var shard: ShardArgument?
    @Option(help: "With --shard auto in a Kubernetes Indexed Job: the number of shards (the Job's completions).")
    var shards: Int?

    func validate() throws {
        if shards != nil, case .fixed? = shard { throw ValidationError("--shards goes with --shard auto only") }
        if shards != nil && shard == nil { throw ValidationError("--shards goes with --shard auto only") }
        _ = try resolved()
    }

    /// The shard this run handles (nil: the whole run).
    func resolved(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ShardSpec? {
        switch shard {
        case nil: return nil
        case let .fixed(spec)?: return spec
        case .auto?:
            do { return try ShardSpec.fromEnvironment(environment, shards: shards) }
            catch let e as ShardError { throw ValidationError(e.description) }
        }
    }
}

/// The one checkpoint of extract, inspect and finetune. Taken as a list so that a second one
/// gets a message that says what to do instead of "unexpected argument".
struct SingleCheckpoint: ParsableArguments {
    @Argument(
        help: "Checkpoint: .safetensors, a torch.save archive (.pth, .pth.tar, .bin, .pt), or a Hugging Face folder.")
    var checkpoints: [String] = []
    var path: String { checkpoints[0] }

    func validate() throws {
        if checkpoints.isEmpty { throw ValidationError("give a checkpoint") }
        if checkpoints.count > 1 {
            throw ValidationError(
                "this command takes one checkpoint, got \(checkpoints.count) "
                + "(\(checkpoints.joined(separator: ", "))); cka, attention and probe take several")
        }
    }
}

/// How models run: heads, image size, threads.
struct ModelOptions: ParsableArguments {
    @Option(parsing: .unconditionalSingleValue,
        help: ArgumentHelp(
            "Attention heads (weights do not record them, except a BEiT model's relative position tables): one "
            + "value for every model, or one per model in order. Default: the tables, the checkpoint's metadata or "
            + "config.json, else width/64."))
    var heads: [Int] = []

    @Option(name: .customLong("image-size"), parsing: .unconditional,
        help: ArgumentHelp(
            "Run every model at this image size; position embeddings are resampled (bicubic) and BEiT's relative "
            + "position tables resized as timm does (SigLIP 2's table bilinearly, as transformers does), and rotary "
            + "positions follow the run's grid."))
    var imageSize: Int?

    @Option(help: ArgumentHelp(
        "Display names of the models, comma-separated in argument order, for titles, axes, legends, "
        + "tables, CSV and JSON (default: the file names without extensions)."))
    var names: NameList?

    @Option(parsing: .unconditionalSingleValue,
        help: ArgumentHelp(
            "The model family, where the tensors cannot tell it (OpenAI CLIP and Perception Encoder share tensor "
            + "names, SigLIP and timm's ViTs without a class token too): one value for every model, or one per "
            + "model in order."))
    var family: [ModelFamily] = []

    @Option(parsing: .unconditional, help: "Threads for OpenBLAS and vitlens's own loops (default: all cores).")
    var threads: Int?

    @Option(help: ArgumentHelp(
        "f32, or bf16: linear layers and attention products with bfloat16 inputs and float32 accumulation "
        + "(needs a CPU with AVX512_BF16; about 1.6x faster)."))
    var precision: Precision = .f32

    func validate() throws {
        if heads.contains(where: { $0 < 1 }) { throw ValidationError("--heads must be at least 1") }
        if let imageSize, imageSize < 1
            || imageSize > 4096 { throw ValidationError("--image-size must be between 1 and 4096") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    /// Checks the number of --heads values against the number of models.
    func validate(models: Int) throws {
        if heads.count > 1 && heads.count != models {
            throw ValidationError("--heads: give one value, or one per model (\(models))")
        }
        if family.count > 1 && family.count != models {
            throw ValidationError("--family: give one value, or one per model (\(models))")
        }
        if let names, names.list.count != models {
            throw ValidationError("--names: give one name per model (\(models)), got \(names.list.count)")
        }
        if precision == .bf16, let why = Precision.bf16Unavailable { throw ValidationError("--precision bf16: \(why)") }
    }

    /// The request for model `i` of `count`; `override` (e.g. --heads-b) wins over --heads.
    func request(
        _ path: String, _ i: Int = 0, override: (Int?, String)? = nil, imageSize size: Int? = nil) -> ModelRequest {
        let name = names.map { $0.list[i] }
        let f = family.isEmpty ? nil : family.count == 1 ? family[0] : family[min(i, family.count - 1)]
        if let (h, flag) = override, let h {
            return ModelRequest(
                path: path, heads: h, headsGivenAs: flag, imageSize: size ?? imageSize, name: name,
                precision: precision, family: f)
        }
        let h = heads.isEmpty ? nil : heads.count == 1 ? heads[0] : heads[i]
        return ModelRequest(
            path: path, heads: h, headsGivenAs: "--heads", imageSize: size ?? imageSize, name: name,
            precision: precision, family: f)
    }

    func applyThreads() { if let threads { VitLensProcess.setThreads(threads) } }
}

/// Loads a model; a head count or image size from the command line that the model cannot take
/// is bad usage (exit 64), named by its option.
func load(_ request: ModelRequest, _ terminal: Terminal) throws -> AnalysisModel {
    let m = try loading(request) { try AnalysisModel(request) }
    if let stated = m.statedHeads, m.config.headsSource == .option, stated.heads != m.config.heads {
        terminal.warning(
            "\(request.path): \(request.headsGivenAs) \(m.config.heads) overrides \(stated.heads) heads from "
            + "\(stated.source); the numbers follow \(request.headsGivenAs)")
    }
    if m.config.headsSource == .convention {
        terminal.notice(
            "\(request.path): head count not recorded; using \(m.config.heads) (width \(m.config.dim)/64, the "
            + "DeiT/ViT convention). mae-lite's Tiny needs --heads 12.")
    }
    return m
}

/// Runs `body`, turning models that cannot be compared into bad usage with the option to use.
func comparing<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as LensError {
        switch e {
        case .differentImageSizes: throw UsageError("\(e); give --image-size to run both at one size")
        case .differentGrids: throw UsageError("\(e) (use --tokens cls or mean)")
        case .noClassToken: throw UsageError("\(e)")
        default: throw e
        }
    }
}

/// --batch: images per forward batch.
struct BatchOption: ParsableArguments {
    @Option(parsing: .unconditional, help: "Images per forward batch.")
    var batch: Int = 64

    func validate() throws {
        if batch < 1 || batch > 4096 { throw ValidationError("--batch must be between 1 and 4096") }
    }
}

/// How images are batched and preprocessed.
struct DecodeOptions: ParsableArguments {
    @OptionGroup var batching: BatchOption
    var batch: Int { batching.batch }

    @Option(help: ArgumentHelp(
        "timm-eval (shorter side to size/0.875, bicubic, centre crop) or none (images must be the model's "
        + "size)."))
    var resize: ResizeMode = .timmEval

    @Flag(name: .customLong("skip-bad-images"), help: "Warn about and skip unreadable images instead of failing.")
    var skipBadImages = false
}

/// A folder of images and how to decode it.
struct ImageOptions: ParsableArguments {
    @Option(help: "Folder of PNG/JPEG images, searched recursively, sorted by relative path.")
    var images: String?
    var folder: String { images ?? "" }

    @Option(parsing: .unconditional, help: "Use the first N images.")
    var num: Int = 1024

    @OptionGroup var decoding: DecodeOptions

    func validate() throws {
        if num < 1 { throw ValidationError("--num must be at least 1") }
    }

    func batches(size: Int, _ terminal: Terminal) throws -> ImageBatches {
        guard let images else {
            throw ValidationError(
            "Missing expected argument '--images <images>' (the folder of images the model runs on)") }
        return try decoding.batches(folder: images, num: num, size: size, terminal)
    }
}

extension DecodeOptions {
    /// The first `num` images of `folder`, decoded as these options say.
    func batches(folder: String, num: Int, size: Int, _ terminal: Terminal) throws -> ImageBatches {
        let b = try ImageBatches(
            folder: folder, num: num, size: size, mode: resize, batch: batch, skipBad: skipBadImages)
        b.onSkip = { terminal.warning("skipping \($0)") }
        return b
    }
}

struct OutputOptions: ParsableArguments {
    @Option(help: "Report folder (default: reports/<command>-<model names>).")
    var out: String?

    @Flag(help: "No progress line and no notices.")
    var quiet = false
}

/// Figure options of the analysing commands and `vitlens plot`.
struct FigureOptions: ParsableArguments {
    @Option(help: "Scale of the PNG figures (1 = 820 px wide; 2 or 3 for print).")
    var scale: Double = 1

    func validate() throws {
        if !(scale >= 0.25 && scale <= 8) { throw ValidationError("--scale must be between 0.25 and 8") }
    }
}

/// `auto` or a number.
enum Bound: ExpressibleByArgument {
    case auto, value(Double)
    init?(argument: String) {
        if argument == "auto" { self = .auto } else if let v = Double(argument),
            v.isFinite { self = .value(v) } else { return nil }
    }
    var number: Double? { if case let .value(v) = self { return v }; return nil }
}

/// --ylim auto|geometry|LOW,HIGH.
extension AxisRange: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument {
        case "auto": self = .auto
        case "geometry": self = .geometry
        default:
            let p = argument.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard p.count == 2, let lo = p[0], let hi = p[1], lo.isFinite, hi.isFinite, hi > lo else { return nil }
            self = .fixed(lo, hi)
        }
    }
}

/// The CKA heatmap's colour range.
struct ColorRangeOptions: ParsableArguments {
    @Option(parsing: .unconditional,
        help: ArgumentHelp(
            "Value drawn as the darkest colour of the CKA heatmap: a number, or auto (default: the data's "
            + "minimum, to 0.05)."))
    var vmin: Bound = .auto
    @Option(parsing: .unconditional,
        help: ArgumentHelp(
            "Value drawn as the brightest colour of the CKA heatmap: a number, or auto (default: the data's "
            + "maximum, to 0.05)."))
    var vmax: Bound = .auto

    func validate() throws {
        if let lo = vmin.number, let hi = vmax.number,
            hi <= lo { throw ValidationError("--vmax must be greater than --vmin") }
    }
}

/// The attention figures' y range.
struct YRangeOption: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Y range of the attention figures: auto (around the data, default), geometry (0 to the largest "
        + "possible value, for comparing figures side by side) or LOW,HIGH."))
    var ylim: AxisRange = .auto
}

func figureStyle(
    _ f: FigureOptions, colors: ColorRangeOptions? = nil, y: YRangeOption? = nil, title: String? = nil) -> FigureStyle {
    FigureStyle(
        scale: f.scale, vmin: colors?.vmin.number, vmax: colors?.vmax.number, ylim: y?.ylim ?? .auto, title: title)
}

/// Where the labelled images come from: an ImageFolder pair, one folder split, or CIFAR.
struct DatasetOptions: ParsableArguments {
    @Option(help: "Train images, ImageFolder layout (DIR/<class>/<image>).")
    var train: String?
    @Option(help: "Test images, same class folder names as --train.")
    var test: String?
    @Option(help: "Instead of --test: hold out this fraction of each --train class (seeded, stratified).")
    var split: Double?
    @Option(help: "Seed of --split and of fine-tuning.")
    var seed: UInt64 = 0
    @Option(name: .customLong("cifar10"), help: "CIFAR-10 binary folder (data_batch_*.bin, test_batch.bin).")
    var cifar10: String?
    @Option(name: .customLong("cifar100"), help: "CIFAR-100 binary folder (train.bin, test.bin).")
    var cifar100: String?
    @Option(name: .customLong("limit-train"), parsing: .unconditional,
        help: "Use at most N train images, balanced over the classes.")
    var limitTrain: Int?
    @Option(name: .customLong("limit-test"), parsing: .unconditional,
        help: "Use at most N test images, balanced over the classes.")
    var limitTest: Int?

    func validate() throws {
        if [train, cifar10, cifar100].compactMap({ $0 }).count != 1 {
            throw ValidationError("give exactly one of --train DIR, --cifar10 DIR, --cifar100 DIR") }
        if train != nil
            && (test == nil) == (split == nil) {
            throw ValidationError("with --train give either --test DIR or --split FRACTION") }
        if train == nil && (test != nil || split != nil) { throw ValidationError("--test and --split go with --train") }
        if let split, !(split > 0 && split < 1) { throw ValidationError("--split must be between 0 and 1 (exclusive)") }
        for (n, v) in [("--limit-train", limitTrain), ("--limit-test", limitTest)] {
            if let v, v < 1 { throw ValidationError("\(n) must be at least 1") } }
    }

    var data: LabeledData {
        let source: LabeledData.Source
        if let d = cifar10 { source = .cifar(d, .cifar10) } else if let d = cifar100 { source = .cifar(d, .cifar100) }
        else if let split { source = .split(train: train!, fraction: split, seed: seed) } else {
            source = .folders(train: train!, test: test!) }
        return LabeledData(source: source, limitTrain: limitTrain, limitTest: limitTest)
    }
}

/// Fine-tuning hyper-parameters (defaults: mae-lite's recipe where it applies).
struct FineTuneOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Fine-tuning epochs.") var epochs: Int = 10
    @Option(help: "Peak learning rate (AdamW), reached after the warm-up.") var lr: Double = 1e-3
    @Option(name: .customLong("min-lr"),
        help: "Learning rate at the end of the cosine schedule.") var minLR: Double = 1e-6
    @Option(name: .customLong("warmup-epochs"),
        help: "Linear warm-up, in epochs (fractions allowed).") var warmupEpochs: Double = 1
    @Option(name: .customLong("weight-decay"),
        help: "AdamW decoupled weight decay (weight matrices only).") var weightDecay: Double = 0.05
    @Option(name: .customLong("layer-decay"),
        help: "Layer-wise learning-rate decay (mae-lite: 0.75).") var layerDecay: Double = 0.75
    @Option(name: .customLong("train-batch"), parsing: .unconditional,
        help: "Images per training step.") var trainBatch: Int = 32

    func validate() throws {
        if epochs < 1 { throw ValidationError("--epochs must be at least 1") }
        if trainBatch < 1 || trainBatch > 1024 { throw ValidationError("--train-batch must be between 1 and 1024") }
        for (n, v) in [
            ("--lr", lr), ("--min-lr", minLR), ("--warmup-epochs", warmupEpochs), ("--weight-decay", weightDecay)] {
            if !(v >= 0 && v.isFinite) { throw ValidationError("\(n) must be a non-negative number") }
        }
        if !(layerDecay > 0 && layerDecay <= 1) { throw ValidationError("--layer-decay must be in (0, 1]") }
    }

    func settings(seed: UInt64, pooling: ProbePooling) -> FineTuneSettings {
        var s = FineTuneSettings()
        s.epochs = epochs; s.batch = trainBatch; s.learningRate = lr; s.minLearningRate = minLR
        s.warmupEpochs = min(warmupEpochs, Double(epochs)); s.weightDecay = weightDecay; s.layerDecay = layerDecay
        s.seed = seed; s.pooling = pooling
        return s
    }
}

/// `--names a,b,c`: non-empty, distinct display names.
struct NameList: ExpressibleByArgument {
    let list: [String]
    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces) }
        // Names also make default report folders: no empty ones, no slashes, no repeats.
        guard !parts.contains(where: { $0.isEmpty || $0.contains("/") }),
            Set(parts).count == parts.count else { return nil }
        list = parts
    }
}

extension ExtractTokens: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}

/// `--layers 0,6,12` of extract: representation indices, 0 allowed, sorted and unique.
struct RepList: ExpressibleByArgument {
    let list: [Int]
    init?(argument: String) {
        let parts = argument.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ ($0 ?? -1) >= 0 }) else { return nil }
        list = Array(Set(parts.compactMap { $0 })).sorted()
    }
}

/// `--layers 3,6,12`.
struct LayerList: ExpressibleByArgument {
    let list: [Int]
    init?(argument: String) {
        let parts = argument.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ ($0 ?? 0) >= 1 }) else { return nil }
        list = Array(Set(parts.compactMap { $0 })).sorted()
    }
}

/// Runs `body` (a model load), turning what the command line got wrong into bad usage (exit 64):
/// a family to say or that contradicts the tensors, a head count or image size the model cannot take.
func loading<T>(_ request: ModelRequest, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as FamilyError {
        // Which family a model is, is the user's to say where the file does not: bad usage.
        switch e {
        case .ambiguous, .contradicts(_, _, "--family", _): throw UsageError("\(e)")
        default: throw e
        }
    } catch let e as EngineError {
        switch e {
        case let .headsDoNotDivide(heads, dim, .option):
            throw UsageError(
                "\(request.headsGivenAs) \(heads) does not divide the embedding width \(dim) of \(request.path)")
        case let .imageSizeNotMultiple(size, patch):
            throw UsageError("--image-size \(size) is not a multiple of the patch size \(patch) of \(request.path)")
        case let .headsContradictTable(heads, .option, table):
            throw UsageError(
                "\(request.headsGivenAs) \(heads) contradicts \(request.path), whose relative position tables have "
                + "\(table) heads")
        default: throw e
        }
    }
}
