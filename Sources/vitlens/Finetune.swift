import ArgumentParser
import Checkpoint
import Engine
import Foundation
import Images
import Render
import Train
import VitLensCore

struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune a ViT (optionally its first k blocks) with a new linear head, and save it as safetensors.",
        discussion: """
        Trains blocks 0…k−1, the final norm and a new linear head end to end on an ImageFolder (or CIFAR)
        train set: cross-entropy, AdamW, warm-up then cosine, layer-wise learning-rate decay, seeded and
        deterministic. Reports the loss per epoch and the test accuracy; --save writes a safetensors
        checkpoint (timm names, num_heads metadata) that every vitlens command loads.
        """)

    @Argument(help: "Checkpoint file or Hugging Face folder.")
    var checkpoint: String
    @OptionGroup var dataset: DatasetOptions
    @OptionGroup var model: ModelOptions
    @Option(help: "Keep only the first k blocks (default: all).")
    var layers: Int?
    @Option(help: "mean (of the patch tokens) or cls (the class token), after the final norm, feeds the head.")
    var pool: ProbePooling = .mean
    @Option(help: "timm-eval (shorter side to size/0.875, bicubic, centre crop) or none.")
    var resize: ResizeMode = .timmEval
    @Option(help: "Images per evaluation batch.")
    var batch: Int = 64
    @OptionGroup var training: FineTuneOptions
    @Option(help: "Write the fine-tuned model here (.safetensors).")
    var save: String?
    @Option(name: .customLong("save-dtype"), help: "f32, or f16 (half the size; what the bundled checkpoints use).")
    var saveDType: SaveDType = .f32
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if let layers, layers < 1 { throw ValidationError("--layers must be at least 1") }
        if batch < 1 || batch > 4096 { throw ValidationError("--batch must be between 1 and 4096") }
        if let save, !save.hasSuffix(".safetensors") { throw ValidationError("--save must name a .safetensors file") }
    }

    func run() throws {
        model.applyThreads()
        let (train, test, datasetJSON) = try dataset.load()
        let m = try loadModel(checkpoint, heads: model.heads, imageSize: model.imageSize, quiet: output.quiet)
        let k = layers ?? m.config.depth
        guard k <= m.config.depth else { throw ValidationError("--layers \(k): \(checkpoint) has \(m.config.depth) blocks") }
        if let save {
            let dir = (save as NSString).deletingLastPathComponent
            var isDir: ObjCBool = false
            guard dir.isEmpty || (FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) && isDir.boolValue) else {
                throw CheckpointError.cannotWrite(path: save, reason: "no folder \(dir)")
            }
        }
        let outDir = try OutputDirectory(output.out ?? "reports/finetune-\(m.name)")
        defer { outDir.discard() }
        let s = training.settings(seed: dataset.seed, pooling: pool)
        let size = m.config.imageSize
        let trainLoader = ImageLoader(items: train.items, size: size, mode: resize), testLoader = ImageLoader(items: test.items, size: size, mode: resize)
        let net = TrainableViT(weights: m.engine.weights, keep: k, classes: train.classes.count, pooling: pool, seed: s.seed)
        let progress = Progress("finetune", total: s.epochs * train.count, quiet: output.quiet)
        var csv = CSVTable(header: ["epoch", "train_loss", "train_accuracy_running", "learning_rate", "seconds"])
        let t0 = Date()
        let logs = try fineTune(net, labels: train.labels, settings: s, load: trainLoader.load, onEpoch: { log in
            progress.finish()
            if !output.quiet {
                FileHandle.standardError.write(Data(String(format: "epoch %d/%d: loss %.4f, running train accuracy %.4f, lr %.2e, %.1f img/s\n",
                                                           log.epoch, s.epochs, log.meanLoss, log.trainAccuracy, log.learningRate,
                                                           Double(train.count) / max(log.seconds, 1e-9)).utf8))
            }
        }, onStep: { step, _ in progress.update(min(s.epochs * train.count, step * s.batch)) })
        let trainSeconds = Date().timeIntervalSince(t0)
        for l in logs { csv.append(["\(l.epoch)", csvNumber(l.meanLoss), csvNumber(l.trainAccuracy), csvNumber(l.learningRate), String(format: "%.2f", l.seconds)]) }
        let testAcc = try evaluate(net, labels: test.labels, batch: batch, load: testLoader.load)
        let trainAcc = try evaluate(net, labels: train.labels, batch: batch, load: trainLoader.load)
        try outDir.write("finetune.csv", csv.render())
        let json = JSONValue.object([
            ("vitlens_version", .string(vitlensVersion)), ("command_line", .string(CommandLine.arguments.joined(separator: " "))),
            ("setup", .object([("command", "finetune"), ("model", modelJSON(m)), ("dataset", datasetJSON),
                               ("definitions", .object([("layers_kept", .int(k)), ("pool", .string(pool.rawValue)), ("settings", training.json),
                                                        ("resize", .string(resize.rawValue)), ("image_size", .int(size)), ("seed", .int(Int(truncatingIfNeeded: dataset.seed)))]))])),
            ("results", .object([("train_accuracy", .double(trainAcc)), ("test_accuracy", .double(testAcc)),
                                 ("chance_accuracy", .double(Double(test.classCounts.max() ?? 0) / Double(max(1, test.count)))),
                                 ("images_per_second", .double((Double(s.epochs * train.count) / max(trainSeconds, 1e-9) * 100).rounded() / 100)),
                                 ("epochs", epochsJSON(logs)), ("saved", save.map { .string($0) } ?? .null)])),
        ])
        try outDir.write("finetune.json", json.render() + "\n")
        if let save {
            // The tensors must outlive the raw pointers handed to the writer.
            let state = net.stateDict()
            let entries = state.map { SafetensorsWriter.Entry(name: $0.0, shape: $0.1, data: UnsafePointer($0.2.data)) }
            try withExtendedLifetime(state) {
            try SafetensorsWriter.write(path: save, tensors: entries, metadata: [
                ("num_heads", "\(m.config.heads)"), ("layer_norm_eps", "\(m.config.eps)"), ("format", "pt"), ("producer", "vitlens \(vitlensVersion) finetune"),
                ("source", m.checkpoint.path), ("source_sha256", m.checkpoint.sha256()), ("layers_kept", "\(k)"),
                ("global_pool", pool == .mean ? "avg" : "token"), ("classes", JSONValue.array(train.classes.map { .string($0) }).render()),
                ("test_accuracy", "\(testAcc)"),
            ], dtype: saveDType == .f16 ? .f16 : .f32)
            }
        }
        try outDir.commit()
        if !output.quiet {
            FileHandle.standardError.write(Data(String(format: "train accuracy %.4f, test accuracy %.4f (chance %.4f)\n", trainAcc, testAcc,
                                                       Double(test.classCounts.max() ?? 0) / Double(max(1, test.count))).utf8))
            FileHandle.standardError.write(Data("wrote \(outDir.finalPath)/{finetune.csv, finetune.json}\(save.map { " and \($0)" } ?? "")\n".utf8))
        }
    }
}

enum SaveDType: String, ExpressibleByArgument { case f32, f16 }
