import Analysis
import ArgumentParser
import Foundation
import Render

/// `--shard i/n`: this run handles the batches whose index ≡ i (mod n) (SPEC §10).
struct ShardSpec: ExpressibleByArgument, CustomStringConvertible {
    let index: Int
    let count: Int

    init?(argument: String) {
        let parts = argument.split(separator: "/")
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, i >= 0, i < n else { return nil }
        index = i
        count = n
    }

    init(index: Int, count: Int) { self.index = index; self.count = count }

    func owns(_ batch: Int) -> Bool { batch % count == index }
    var description: String { "\(index)/\(count)" }
}

/// A shard's mergeable partial sums: the per-batch values the report is computed from, so that
/// merging sums them in batch order exactly as a single run does.
struct Partial {
    static let fileName = "partial.json"
    var command: String
    var shard: ShardSpec
    /// Everything that must agree between shards: models, images, definitions, batch count.
    var setup: JSONValue
    var batches: [JSONValue]
    var dropped: [Int]

    func json(commandLine: String) -> JSONValue {
        .object([
            ("vitlens_partial", 1), ("vitlens_version", .string(vitlensVersion)), ("command_line", .string(commandLine)),
            ("command", .string(command)), ("shard", .string(shard.description)), ("setup", setup),
            ("batches", .array(batches)), ("dropped_batches", .array(dropped.map { .int($0) })),
        ])
    }

    static func read(_ path: String) throws -> Partial {
        var file = path
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue { file = path + "/" + fileName }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw MergeError("\(file): cannot read (is it a folder written with --shard?)")
        }
        let v: JSONValue
        do { v = try JSONValue.parse(String(decoding: data, as: UTF8.self)) } catch { throw MergeError("\(file): \(error)") }
        guard v["vitlens_partial"]?.intValue == 1, let command = v["command"]?.stringValue,
              let shardText = v["shard"]?.stringValue, let shard = ShardSpec(argument: shardText),
              let setup = v["setup"], let batches = v["batches"]?.arrayValue,
              let dropped = v["dropped_batches"]?.arrayValue?.compactMap(\.intValue) else {
            throw MergeError("\(file): not a vitlens partial.json")
        }
        return Partial(command: command, shard: shard, setup: setup, batches: batches, dropped: dropped)
    }
}

struct MergeError: Error, CustomStringConvertible, VitLensError {
    let description: String
    init(_ s: String) { description = s }
}

// MARK: - Per-batch records as JSON (doubles written in their shortest exact form)

func doubles(_ a: [Double]) -> JSONValue { .array(a.map { .double($0) }) }

func readDoubles(_ v: JSONValue?, count: Int, what: String) throws -> [Double] {
    guard let a = v?.arrayValue, a.count == count else { throw MergeError("partial.json: \(what) should hold \(count) numbers") }
    return try a.map { x in
        guard let d = x.doubleValue else { throw MergeError("partial.json: \(what) holds a non-number") }
        return d
    }
}

extension CKABatch {
    var json: JSONValue {
        .object([("index", .int(index)), ("size", .int(size)), ("kl", doubles(kl)), ("kk", doubles(kk)), ("ll", doubles(ll))])
    }

    init(json v: JSONValue, layersA: Int, layersB: Int) throws {
        guard let i = v["index"]?.intValue, let s = v["size"]?.intValue else { throw MergeError("partial.json: batch without index/size") }
        self.init(index: i, size: s, kl: try readDoubles(v["kl"], count: layersA * layersB, what: "kl"),
                  kk: try readDoubles(v["kk"], count: layersA, what: "kk"), ll: try readDoubles(v["ll"], count: layersB, what: "ll"))
    }
}

extension AttentionBatch {
    var json: JSONValue {
        var o: [(String, JSONValue)] = [("index", .int(index)), ("size", .int(size)),
                                        ("entropy_sums", doubles(entropySums)), ("distance_sums", doubles(distanceSums))]
        if !entropies.isEmpty { o += [("entropies", doubles(entropies)), ("distances", doubles(distances))] }
        return .object(o)
    }

    init(json v: JSONValue, layers: Int, heads: Int, perImage: Bool) throws {
        guard let i = v["index"]?.intValue, let s = v["size"]?.intValue else { throw MergeError("partial.json: batch without index/size") }
        let n = layers * heads
        self.init(index: i, size: s, entropySums: try readDoubles(v["entropy_sums"], count: n, what: "entropy_sums"),
                  distanceSums: try readDoubles(v["distance_sums"], count: n, what: "distance_sums"),
                  entropies: perImage ? try readDoubles(v["entropies"], count: s * n, what: "entropies") : [],
                  distances: perImage ? try readDoubles(v["distances"], count: s * n, what: "distances") : [])
    }
}
