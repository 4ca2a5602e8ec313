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
    /// A similarity shard's covariance sums, one per pair (written beside partial.json as raw
    /// little-endian float64, sums-<pair>.f64).
    public var sums: [CovarianceSums] = []
    /// The shard folder it was read from.
    public var folder: String = "."

    public init(command: String, shard: ShardSpec, setup: JSONValue, batches: [JSONValue], dropped: [Int],
                sums: [CovarianceSums] = []) {
        (self.command, self.shard, self.setup, self.batches, self.dropped, self.sums) = (
            command, shard, setup, batches, dropped, sums)
    }

    public func json(commandLine: String) -> JSONValue {
        .object([
            ("vitlens_partial", 1), ("vitlens_version", .string(vitlensVersion)),
                ("command_line", .string(commandLine)),
            ("command", .string(command)), ("shard", .string(shard.description)), ("setup", setup),
            ("batches", .array(batches)), ("dropped_batches", .array(dropped.map { .int($0) })),
        ] + (sums.isEmpty ? [] : [("sums", .array(sums.enumerated().map { p, s in
            .object([("pair", .int(p)), ("file", .string("sums-\(p).f64")), ("count", .int(s.count)),
                     ("layers_a", .int(s.layersA)), ("dim_a", .int(s.dimA)), ("layers_b", .int(s.layersB)),
                     ("dim_b", .int(s.dimB)),
                     ("arrays", .array(s.arrays.map { .array([.string($0.0), .int($0.1.count)]) }))])
        }))]))
    }

    public func write(to out: OutputDirectory, commandLine: String) throws -> [String] {
        var files = [Partial.fileName]
        for (p, s) in sums.enumerated() {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(s.arrays.reduce(0) { $0 + 8 * $1.1.count })
            for (_, a) in s.arrays { for v in a { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } } }
            try out.write("sums-\(p).f64", bytes: bytes)
            files.append("sums-\(p).f64")
        }
        try out.write(Partial.fileName, json(commandLine: commandLine).render() + "\n")
        return files
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
        var part = Partial(command: command, shard: shard, setup: setup, batches: batches, dropped: dropped)
        part.folder = (file as NSString).deletingLastPathComponent
        for entry in v["sums"]?.arrayValue ?? [] {
            part.sums.append(try readSums(entry, folder: part.folder))
        }
        return part
    }

    /// One pair's covariance sums from the raw float64 file partial.json names.
    static func readSums(_ e: JSONValue, folder: String) throws -> CovarianceSums {
        guard let name = e["file"]?.stringValue, !name.contains("/"), let n = e["count"]?.intValue,
              let la = e["layers_a"]?.intValue, let da = e["dim_a"]?.intValue, let lb = e["layers_b"]?.intValue,
              let db = e["dim_b"]?.intValue, let list = e["arrays"]?.arrayValue else {
            throw MergeError.missingField("a sums entry without file, count, layers, dims or arrays")
        }
        let path = folder + "/" + name
        guard let data = FileManager.default.contents(atPath: path) else { throw MergeError.unreadable(path: path) }
        var arrays: [String: [Double]] = [:], offset = 0
        for item in list {
            guard let pair = item.arrayValue, pair.count == 2, let key = pair[0].stringValue, let len = pair[1].intValue,
                  len >= 0, offset + 8 * len <= data.count else {
                throw MergeError.malformed(path: path, reason: "shorter than partial.json says")
            }
            arrays[key] = data.withUnsafeBytes { raw in
                (0..<len).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(
                    fromByteOffset: offset + 8 * $0, as: UInt64.self))) }
            }
            offset += 8 * len
        }
        guard offset == data.count,
              let s = CovarianceSums(layersA: la, dimA: da, layersB: lb, dimB: db, count: n, arrays: arrays) else {
            throw MergeError.malformed(path: path, reason: "its arrays do not match the layers and widths")
        }
        return s
    }
}

/// The report that merging shards gives: the same one a single run gives.
public enum MergedReport {
    case cka(CKAResult)
    case attention(AttentionResult)
    case similarity(SimilarityReport)

    /// Checks that the shards come from one command line and that all n are there, then sums
    /// their per-batch values in batch order. `sources` name the shards in messages and the report.
    public static func merge(_ parts: [Partial], sources: [String], commandLine: String,
                             observer: RunObserver = CollectingObserver()) throws -> MergedReport {
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
        case "similarity":
            let setup = try typed(SimilaritySetup.self)
            let pairs = setup.selfComparison ? 1 : setup.sides.count * (setup.sides.count - 1) / 2
            var batches = [[CKABatch]](repeating: [], count: pairs)
            for part in parts {
                for b in part.batches {
                    guard let p = b["pair"]?.intValue, (0..<pairs).contains(p) else {
                        throw MergeError.missingField("a similarity batch without its pair") }
                    let (i, j) = setup.selfComparison ? (0, 0) : pairIndices(p, of: setup.sides.count)
                    batches[p].append(try CKABatch(json: b, layersA: setup.layers[i].count,
                                                   layersB: setup.layers[j].count))
                }
            }
            var sums: [CovarianceSums?] = [CovarianceSums?](repeating: nil, count: pairs)
            for part in parts.sorted(by: { $0.shard.index < $1.shard.index }) where !part.sums.isEmpty {
                guard part.sums.count == pairs else {
                    throw MergeError.malformed(path: part.folder, reason: "holds \(part.sums.count) pairs' sums, not \(pairs)") }
                for (p, s) in part.sums.enumerated() {
                    if sums[p] == nil { sums[p] = s } else {
                        guard sums[p]!.shiftA == s.shiftA, sums[p]!.shiftB == s.shiftB else {
                            throw MergeError.malformed(path: part.folder, reason: "its sums are shifted differently")
                        }
                        sums[p]!.merge(s)
                    }
                }
            }
            return .similarity(try SimilarityReport(
                setup: setup, sums: sums, batches: batches, held: [],
                dropped: parts.flatMap(\.dropped).sorted(), run: run, observer: observer))
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

/// The (i, j) of pair p in the order i < j, row by row.
func pairIndices(_ p: Int, of n: Int) -> (Int, Int) {
    var k = 0
    for i in 0..<n { for j in (i + 1)..<max(i + 1, n) { if k == p { return (i, j) }; k += 1 } }
    return (0, 0)
}
