import Analysis
import ArgumentParser
import Engine
import Foundation
import Images
import Lens
import Train
import VitLensCore

struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Layer-truncation transfer probe: keep the first k blocks, measure downstream accuracy for every k.",
        discussion: "One forward pass per model caches, for every k = 1…L, the output of block k with the model's "
            + "final norm applied to every token, mean-pooled over the patch tokens (--pool cls: the class token). "
            + "Features are standardised with the train statistics and a multinomial logistic regression with L2 "
            + "(scikit-learn's default C = 1) is fitted to convergence by L-BFGS. Several models share the image "
            + "decoding. Writes probe.csv, probe.json, probe.png/.svg, index.html.")

    @Argument(help: "Checkpoints (files or Hugging Face folders); several are compared in one figure.")
    var checkpoints: [String]
    @OptionGroup var dataset: DatasetOptions
    @OptionGroup var model: ModelOptions
    @OptionGroup var decoding: DecodeOptions
    @Option(help: ArgumentHelp(
        "mean (of the patch tokens) or cls (the class token; SigLIP-style models have none), after the "
        + "final norm."))
    var pool: ProbePooling = .mean
    @Option(name: .customLong("max-iter"), help: "L-BFGS iteration limit per depth.")
    var maxIter: Int = 2000
    @Flag(help: "Fine-tune instead: for each k keep blocks 0…k−1 plus a new linear head and train end to end (AdamW).")
    var finetune = false
    @Option(help: "With --finetune: the depths k to train, e.g. 3,6,12 (default: every k).")
    var layers: LayerList?
    @OptionGroup var training: FineTuneOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var figures: FigureOptions

    func validate() throws {
        if checkpoints.isEmpty { throw ValidationError("give at least one checkpoint") }
        if finetune
            && model.precision == .bf16 {
            throw ValidationError("--precision bf16 is for the forward engine; --finetune trains in float32") }
        try model.validate(models: checkpoints.count)
        if maxIter < 1 { throw ValidationError("--max-iter must be at least 1") }
        if finetune
            && decoding.skipBadImages {
            throw ValidationError("--skip-bad-images does not go with --finetune (training needs every listed image)") }
        if layers != nil
            && !finetune {
            throw ValidationError(
            "--layers goes with --finetune (the linear probe always fits every k from one pass)") }
    }

    func run() throws {
        model.applyThreads()
        let terminal = Terminal(quiet: output.quiet)
        let data = try dataset.data.load()
        var models: [AnalysisModel] = []
        for (i, path) in checkpoints.enumerated() {
            models.append(
                try load(
                model.request(path, i, imageSize: model.imageSize ?? models.first?.config.imageSize), terminal))
        }
        if let layers, let m = models.first(where: { $0.config.depth < layers.list.last! }) {
            throw UsageError("--layers \(layers.list.last!): \(m.request.path) has \(m.config.depth) blocks")
        }
        let job = try comparing {
            try ProbeRun(
            models: models, data: data, batch: decoding.batch, resize: decoding.resize, skipBad: decoding.skipBadImages,
                               pool: pool, maxIterations: maxIter, fineTune: finetune
                                   ? training.settings(seed: dataset.seed, pooling: pool) : nil,
                               depths: layers?.list) }
        var result: ProbeResult?
        let (dir, files) = try writingReport(
            output.out, default: "reports/probe-" + models.map(\.name).joined(separator: "-"), command: "probe",
            terminal) { out in
            let r = try job.run(RunContext(commandLine: commandLine, observer: terminal))
            result = r
            return try r.write(to: out) + r.draw(into: out, style: FigureStyle(scale: figures.scale), terminal)
        }
        for m in result?.models ?? [] {
            if let best = m.rows.max(by: { $0.test < $1.test }), !output.quiet {
                terminal.say(
                    "\(m.name): best test accuracy \(String(format: "%.4f", best.test)) keeping \(best.layersKept) "
                    + "blocks")
            }
        }
        terminal.wrote(dir, files)
    }
}

struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune a ViT (optionally its first k blocks) with a new linear head, and save it as safetensors.",
        discussion: "Trains blocks 0…k−1, the final norm and a new linear head end to end on an ImageFolder (or "
            + "CIFAR) train set: cross-entropy, AdamW, warm-up then cosine, layer-wise learning-rate decay, seeded "
            + "and deterministic. Reports the loss per epoch and the test accuracy; --save writes a safetensors "
            + "checkpoint (timm's names for the model's family; num_heads, layer_norm_eps and hidden_act in the "
            + "metadata) that every vitlens command loads.")

    @OptionGroup var single: SingleCheckpoint
    var checkpoint: String { single.path }
    @OptionGroup var dataset: DatasetOptions
    @OptionGroup var model: ModelOptions
    @Option(help: "Keep only the first k blocks (default: all).")
    var layers: Int?
    @Option(help: ArgumentHelp(
        "mean (of the patch tokens) or cls (the class token; SigLIP-style models have none), after the "
        + "final norm, feeds the head."))
    var pool: ProbePooling = .mean
    @OptionGroup var decoding: DecodeOptions
    @OptionGroup var training: FineTuneOptions
    @Option(help: "Write the fine-tuned model here (.safetensors).")
    var save: String?
    @Option(name: .customLong("save-dtype"), help: "f32, or f16 (half the size; what the bundled checkpoints use).")
    var saveDType: SaveDType = .f32
    @OptionGroup var output: OutputOptions

    enum SaveDType: String, ExpressibleByArgument { case f32, f16 }

    func validate() throws {
        if model.precision == .bf16 {
            throw ValidationError("--precision bf16 is for the forward engine; finetune trains in float32") }
        try model.validate(models: 1)
        if let layers, layers < 1 { throw ValidationError("--layers must be at least 1") }
        if let save, !save.hasSuffix(".safetensors") { throw ValidationError("--save must name a .safetensors file") }
        if decoding.skipBadImages {
            throw ValidationError("--skip-bad-images does not go with finetune (training needs every listed image)") }
    }

    func run() throws {
        model.applyThreads()
        let terminal = Terminal(quiet: output.quiet)
        let data = try dataset.data.load()
        let m = try load(model.request(checkpoint), terminal)
        if let layers,
            layers > m.config.depth {
            throw UsageError("--layers \(layers): \(checkpoint) has \(m.config.depth) blocks") }
        let job = try comparing {
            try FinetuneRun(
            model: m, data: data, keep: layers, pool: pool, resize: decoding.resize, batch: decoding.batch,
                                  settings: training.settings(seed: dataset.seed, pooling: pool), save: save,
                                      saveDType: saveDType == .f16 ? .f16 : .f32) }
        var result: FinetuneRun.Result?
        let (dir, files) = try writingReport(
            output.out, default: "reports/finetune-\(m.name)", command: "finetune", terminal) { out in
            let r = try job.run(RunContext(commandLine: commandLine, observer: terminal))
            result = r
            try out.write("finetune.csv", r.csv.render())
            try out.write("finetune.json", r.json.render() + "\n")
            return ["finetune.csv", "finetune.json"]
        }
        if let r = result, !output.quiet {
            terminal.say(
                String(format: "train accuracy %.4f, test accuracy %.4f (chance %.4f)", r.trainAccuracy, r.testAccuracy,
                r.chance))
        }
        terminal.wrote(dir, files + (save.map { [$0] } ?? []))
    }
}
