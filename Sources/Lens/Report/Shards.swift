import Analysis
import Foundation

/// `i/n`: a run that handles the batches whose index ≡ i (mod n), so that a job array spreads
/// one analysis over many machines and `merge` puts it back together.
public struct ShardSpec: CustomStringConvertible, Equatable {
    public let index: Int
    public let count: Int

    public init?(parsing text: String) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, i >= 0, i < n else { return nil }
        index = i
        count = n
    }

    public init(index: Int, count: Int) { self.index = index; self.count = count }

    public func owns(_ batch: Int) -> Bool { batch % count == index }

    /// `--shard auto`: this task's index and the number of tasks, from a Slurm job array
    /// (SLURM_ARRAY_TASK_ID, _MIN, _MAX and, if set, _STEP: index (id − min)/step of
    /// (max − min)/step + 1) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, of `shards`, the
    /// Job's completions, which the environment does not hold). `shards` given beside a Slurm
    /// array must agree with it.
    public static func fromEnvironment(_ env: [String: String], shards: Int?) throws -> ShardSpec {
        func int(_ name: String) throws -> Int? {
            guard let v = env[name] else { return nil }
            guard let i = Int(v.trimmingCharacters(in: .whitespaces)) else {
                throw ShardError("--shard auto: \(name) is '\(v)', not an integer")
            }
            return i
        }
        if let id = try int("SLURM_ARRAY_TASK_ID") {
            guard let lo = try int("SLURM_ARRAY_TASK_MIN"), let hi = try int("SLURM_ARRAY_TASK_MAX") else {
                throw ShardError("--shard auto: SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_MIN and _MAX")
            }
            let step = try int("SLURM_ARRAY_TASK_STEP") ?? 1
            guard step >= 1, hi >= lo, id >= lo, id <= hi, (id - lo) % step == 0 else {
                throw ShardError("--shard auto: Slurm array task \(id) is not one of \(lo)-\(hi):\(step)")
            }
            let spec = ShardSpec(index: (id - lo) / step, count: (hi - lo) / step + 1)
            if let shards, shards != spec.count {
                throw ShardError("--shards \(shards) disagrees with the Slurm array \(lo)-\(hi):\(step) "
                    + "(\(spec.count) tasks)")
            }
            return spec
        }
        if let index = try int("JOB_COMPLETION_INDEX") {
            guard let shards else {
                throw ShardError("--shard auto in a Kubernetes Indexed Job needs --shards N (the Job's completions)")
            }
            guard shards >= 1, index >= 0, index < shards else {
                throw ShardError("--shard auto: JOB_COMPLETION_INDEX \(index) is not below --shards \(shards)")
            }
            return ShardSpec(index: index, count: shards)
        }
        throw ShardError("--shard auto: neither a Slurm job array (SLURM_ARRAY_TASK_ID) nor a Kubernetes Indexed "
            + "Job (JOB_COMPLETION_INDEX) in the environment; give --shard i/n")
    }
    public var description: String { "\(index)/\(count)" }
}

/// Why `--shard auto` cannot tell this task's shard.
public struct ShardError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// A shard's mergeable partial sums: the per-batch values the report is computed from, so that
/// merging sums them in batch order exactly as a single run does.
public struct Partial {
    public static let fileName = "partial.json"
    public var command: String
    public var shard: ShardSpec
    /// Everything that must agree between shards: models, images, definitions, batch count.
    public var setup: JSONValue
    public var batches: [JSONValue]
    public var dropped: [Int]

    public func json(commandLine: String) -> JSONValue {
        .object([
            ("vitlens_partial", 1), ("vitlens_version", .string(vitlensVersion)),
                ("command_line", .string(commandLine)),
            ("command", .string(command)), ("shard", .string(shard.description)), ("setup", setup),
            ("batches", .array(batches)), ("dropped_batches", .array(dropped.map { .int($0) })),
        ])
    }

    public func write(to out: OutputDirectory, commandLine: String) throws -> [String] {
        try out.write(Partial.fileName, json(commandLine: commandLine).render() + "\n")
        return [Partial.fileName]
    }

    /// A shard folder (or its partial.json).
    public static func read(_ path: String) throws -> Partial {
        var file = path
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir),
            isDir.boolValue { file = path + "/" + fileName }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw MergeError.unreadable(path: file)
        }
        let v: JSONValue
        do { v = try JSONValue.parse(String(decoding: data, as: UTF8.self)) } catch {
            throw MergeError.malformed(path: file, reason: "\(error)") }
        guard v["vitlens_partial"]?.intValue == 1, let command = v["command"]?.stringValue,
              let shardText = v["shard"]?.stringValue, let shard = ShardSpec(parsing: shardText),
              let setup = v["setup"], let batches = v["batches"]?.arrayValue,
              let dropped = v["dropped_batches"]?.arrayValue?.compactMap(\.intValue) else {
            throw MergeError.notPartial(path: file)
        }
        return Partial(command: command, shard: shard, setup: setup, batches: batches, dropped: dropped)
    }
}

/// The report that merging shards gives: the same one a single run gives.
public enum MergedReport {
    case cka(CKAResult)
    case attention(AttentionResult)

    /// Checks that the shards come from one command line and that all n are there, then sums
    /// their per-batch values in batch order. `sources` name the shards in messages and the report.
    public static func merge(_ parts: [Partial], sources: [String], commandLine: String) throws -> MergedReport {
        guard let first = parts.first else { throw MergeError.noShards }
        let setupText = first.setup.render()
        for (p, path) in zip(parts, sources) {
            guard p.command == first.command else {
                throw MergeError.differentCommands(path: path, command: p.command, first: first.command) }
            guard p.shard.count == first.shard.count else {
                throw MergeError.differentSplits(
                path: path, shard: p.shard.description, count: p.shard.count, first: first.shard.count) }
            guard p.setup.render() == setupText else {
                throw MergeError.differentSetup(path: path, first: sources[0])
            }
        }
        let seen = parts.map(\.shard.index)
        if let dup = seen.first(where: { i in seen.filter { $0 == i }.count > 1 }) {
            throw MergeError.duplicate(shard: "\(dup)/\(first.shard.count)") }
        let missing = (0..<first.shard.count).filter { !seen.contains($0) }
        guard missing.isEmpty else { throw MergeError.missing(missing.map { "\($0)/\(first.shard.count)" }) }
        let run = RunRecord(commandLine: commandLine, mergedFrom: sources)
        func typed<R: JSONDecodableRecord>(_ type: R.Type) throws -> R {
            do { return try R(json: first.setup) } catch {
                throw MergeError.malformed(path: sources[0], reason: "\(error)") }
        }
        switch first.command {
        case "cka":
            let setup = try typed(CKASetup.self)
            let batches = try parts.flatMap {
                try $0.batches.map { try CKABatch(json: $0, layersA: setup.layersA, layersB: setup.layersB) }
            }
            return .cka(
                try CKAResult(setup: setup, batches: batches, dropped: parts.flatMap(\.dropped).sorted(), run: run))
        case "attention":
            let setup = try typed(AttentionSetup.self)
            let batches = try parts.flatMap {
                try $0.batches.map {
                    try AttentionBatch(json: $0, layers: setup.layers, heads: setup.heads, perImage: setup.perImage) }
            }
            return .attention(try AttentionResult(setup: setup, batches: batches, run: run))
        default:
            throw MergeError.unknownCommand(first.command)
        }
    }
}

// MARK: - Per-batch records as JSON (doubles written in their shortest exact form)

func readDoubles(_ v: JSONValue?, count: Int, what: String) throws -> [Double] {
    guard let a = v?.arrayValue,
        a.count == count else { throw MergeError.missingField("\(what) should hold \(count) numbers") }
    return try a.map { x in
        guard let d = x.doubleValue else { throw MergeError.missingField("\(what) holds a non-number") }
        return d
    }
}

extension CKABatch {
    var json: JSONValue {
        .object([
            ("index", .int(index)), ("size", .int(size)), ("kl", .doubles(kl)), ("kk", .doubles(kk)),
            ("ll", .doubles(ll))])
    }

    init(json v: JSONValue, layersA: Int, layersB: Int) throws {
        guard let i = v["index"]?.intValue,
            let s = v["size"]?.intValue else { throw MergeError.missingField("batch without index/size") }
        self.init(index: i, size: s, kl: try readDoubles(v["kl"], count: layersA * layersB, what: "kl"),
                  kk: try readDoubles(v["kk"], count: layersA, what: "kk"),
                      ll: try readDoubles(v["ll"], count: layersB, what: "ll"))
    }
}

extension AttentionBatch {
    var json: JSONValue {
        var o: [(String, JSONValue)] = [("index", .int(index)), ("size", .int(size)),
                                        ("entropy_sums", .doubles(entropySums)),
                                            ("distance_sums", .doubles(distanceSums))]
        if !entropies.isEmpty { o += [("entropies", .doubles(entropies)), ("distances", .doubles(distances))] }
        return .object(o)
    }

    init(json v: JSONValue, layers: Int, heads: Int, perImage: Bool) throws {
        guard let i = v["index"]?.intValue,
            let s = v["size"]?.intValue else { throw MergeError.missingField("batch without index/size") }
        let n = layers * heads
        self.init(index: i, size: s, entropySums: try readDoubles(v["entropy_sums"], count: n, what: "entropy_sums"),
                  distanceSums: try readDoubles(v["distance_sums"], count: n, what: "distance_sums"),
                  entropies: perImage ? try readDoubles(v["entropies"], count: s * n, what: "entropies") : [],
                  distances: perImage ? try readDoubles(v["distances"], count: s * n, what: "distances") : [])
    }
}
