import Foundation

// Typed records: what reports record about a run (models, arrays, images, definitions) as
// Swift values inside vitlens, turned into JSON only where a file is written or read. Each
// record lists its keys in the order the report has always written them, so the files stay
// byte for byte what they were; reading back names the key that is missing or of the wrong type.

/// A record a report writes as a JSON object.
public protocol JSONEncodableRecord {
    var json: JSONValue { get }
}

/// A record read back from a report or a shard's partial.json.
public protocol JSONDecodableRecord {
    init(json: JSONValue) throws
}

public typealias JSONRecord = JSONEncodableRecord & JSONDecodableRecord

/// A record's JSON that lacks a key or has one of another type.
public struct RecordError: Error, CustomStringConvertible, Equatable {
    /// The record ("CKA setup"), and the key path inside it.
    public let record: String, key: String, problem: String
    public var description: String { "\(record): \(key) \(problem)" }
}

/// Reads the fields of one JSON object, naming what is wrong.
struct JSONFields {
    let value: JSONValue
    let record: String
    let prefix: String

    init(_ value: JSONValue, record: String, prefix: String = "") throws {
        guard case .object = value else {
            throw RecordError(record: record, key: prefix.isEmpty ? "(top)" : prefix, problem: "is not an object") }
        (self.value, self.record, self.prefix) = (value, record, prefix)
    }

    func missing(_ k: String, _ problem: String = "is missing") -> RecordError {
        RecordError(record: record, key: prefix + k, problem: problem)
    }
    func raw(_ k: String) throws -> JSONValue {
        guard let v = value[k] else { throw missing(k) }
        return v
    }
    func has(_ k: String) -> Bool { value[k] != nil }
    /// The value at `k` as `read` takes it, or an error saying what it is not.
    private func typed<T>(_ k: String, _ problem: String, _ read: (JSONValue) -> T?) throws -> T {
        guard let v = read(try raw(k)) else { throw missing(k, problem) }
        return v
    }
    func string(_ k: String) throws -> String { try typed(k, "is not a string", \.stringValue) }
    func int(_ k: String) throws -> Int { try typed(k, "is not an integer", \.intValue) }
    func bool(_ k: String) throws -> Bool { try typed(k, "is not true or false", \.boolValue) }
    func double(_ k: String) throws -> Double { try typed(k, "is not a number", \.doubleValue) }
    /// An integer or null (absent reads as nil too).
    func optionalInt(_ k: String) throws -> Int? {
        guard let v = value[k], v.isNull == false else { return nil }
        guard let i = v.intValue else { throw missing(k, "is not an integer") }
        return i
    }
    func ints(_ k: String) throws -> [Int] {
        try typed(k, "is not an array of integers") { v in v.arrayValue.flatMap { a in
            let i = a.compactMap(\.intValue)
            return i.count == a.count ? i : nil
        } }
    }
    func strings(_ k: String) throws -> [String] {
        try typed(k, "is not an array of strings") { v in v.arrayValue.flatMap { a in
            let s = a.compactMap(\.stringValue)
            return s.count == a.count ? s : nil
        } }
    }
    func object(_ k: String) throws -> JSONFields {
        try JSONFields(try raw(k), record: record, prefix: prefix + k + ".") }
}

extension JSONValue {
    var isNull: Bool { if case .null = self { return true }; return false }
}

/// The image list of a run — or for long lists its SHA-256 (of the newline-joined paths) and
/// count — or, when every side is an array, where the rows came from.
public enum ImagesRecord: JSONRecord, Equatable {
    case listed(folder: String, count: Int, pathsSHA256: String, paths: [String]?)
    case rows(count: Int, from: String)

    /// Paths are listed up to this many images; beyond, only their hash.
    static let listedPaths = 4096

    public init(paths: [String], folder: String) {
        self = .listed(folder: folder, count: paths.count, pathsSHA256: Digest.sha256(paths.joined(separator: "\n")),
                       paths: paths.count <= Self.listedPaths ? paths : nil)
    }

    public var count: Int {
        switch self { case let .listed(_, n, _, _), let .rows(n, _): return n }
    }

    public var json: JSONValue {
        switch self {
        case let .listed(folder, count, sha, paths):
            var fields: [(String, JSONValue)] = [("folder", .string(folder)), ("count", .int(count)),
                                                 ("paths_sha256", .string(sha))]
            if let paths { fields.append(("paths", .array(paths.map { .string($0) }))) }
            return .object(fields)
        case let .rows(count, from):
            return .object([("count", .int(count)), ("from", .string(from))])
        }
    }

    public init(json: JSONValue) throws {
        let f = try JSONFields(json, record: "images")
        if f.has("from") {
            self = .rows(count: try f.int("count"), from: try f.string("from"))
        } else {
            self = .listed(folder: try f.string("folder"), count: try f.int("count"),
                           pathsSHA256: try f.string("paths_sha256"), paths: f.has("paths") ? try f.strings("paths")
                               : nil)
        }
    }
}

/// A model's architecture as every report records it: what was read from the tensors, what
/// was given, and where each setting not in the tensors came from.
public struct ArchitectureRecord: JSONRecord, Equatable {
    public var family: String
    /// What settled the family: `--family`, metadata, a config or layout, or the tensors.
    public var familySource: String
    public var embedDim, depth, heads: Int
    public var headsSource: String
    public var patchSize, checkpointImageSize, imageSize, tokens, prefixTokens, registerTokens, prefixPositionRows: Int
    public var layerScale, preNorm: Bool
    public var activation, activationSource: String
    public var classToken, absolutePositions: Bool
    /// "none", "per block", "shared" or "per block and shared".
    public var relativePositionBias: String
    public var mlpHidden: Int
    public var qkvBias: Bool
    public var finalNorm: String
    /// The blocks' norm ("LayerNorm", "RMSNorm"), MLP ("gelu", "swiglu", with "+ inner norm"), and
    /// rotary positions ("none", or their settings); older reports without them read as the
    /// defaults every model had then.
    public var norm = "LayerNorm", mlp = "plain", rotary = "none"
    public var layerNormEps: Double
    public var parameters: Int
    /// "f32", or the bf16 path and its kernel.
    public var precision: String

    public var json: JSONValue {
        .object([
            ("family", .string(family)), ("family_source", .string(familySource)),
            ("embed_dim", .int(embedDim)), ("depth", .int(depth)), ("heads", .int(heads)),
            ("heads_source", .string(headsSource)), ("patch_size", .int(patchSize)),
            ("checkpoint_image_size", .int(checkpointImageSize)), ("image_size", .int(imageSize)),
            ("tokens", .int(tokens)), ("prefix_tokens", .int(prefixTokens)), ("register_tokens", .int(registerTokens)),
            ("prefix_position_rows", .int(prefixPositionRows)), ("layer_scale", .bool(layerScale)),
            ("pre_norm", .bool(preNorm)),
            ("activation", .string(activation)), ("activation_source", .string(activationSource)),
            ("class_token", .bool(classToken)), ("absolute_positions", .bool(absolutePositions)),
            ("relative_position_bias", .string(relativePositionBias)),
            ("mlp_hidden", .int(mlpHidden)),
            ("qkv_bias", .bool(qkvBias)), ("final_norm", .string(finalNorm)),
            ("norm", .string(norm)), ("mlp", .string(mlp)), ("rotary", .string(rotary)),
            ("layer_norm_eps", .double(layerNormEps)), ("parameters", .int(parameters)),
            ("precision", .string(precision)),
        ])
    }

    public init(
        family: String, familySource: String, embedDim: Int, depth: Int, heads: Int, headsSource: String,
        patchSize: Int,
                checkpointImageSize: Int, imageSize: Int, tokens: Int, prefixTokens: Int, registerTokens: Int,
                prefixPositionRows: Int, layerScale: Bool, preNorm: Bool, activation: String, activationSource: String,
                classToken: Bool, absolutePositions: Bool, relativePositionBias: String, mlpHidden: Int, qkvBias: Bool,
                finalNorm: String, layerNormEps: Double, parameters: Int, precision: String) {
        (self.family, self.familySource, self.embedDim, self.depth) = (family, familySource, embedDim, depth)
        (self.heads, self.headsSource) = (heads, headsSource)
        (self.patchSize, self.checkpointImageSize, self.imageSize, self.tokens) = (
            patchSize, checkpointImageSize, imageSize, tokens)
        (self.prefixTokens, self.registerTokens, self.prefixPositionRows) = (
            prefixTokens, registerTokens, prefixPositionRows)
        (self.layerScale, self.preNorm, self.activation, self.activationSource) = (
            layerScale, preNorm, activation, activationSource)
        (self.classToken, self.absolutePositions, self.relativePositionBias) = (
            classToken, absolutePositions, relativePositionBias)
        (self.mlpHidden, self.qkvBias, self.finalNorm, self.layerNormEps) = (
            mlpHidden, qkvBias, finalNorm, layerNormEps)
        (self.parameters, self.precision) = (parameters, precision)
    }

    public init(json: JSONValue) throws {
        let f = try JSONFields(json, record: "architecture")
        self.init(
            family: try f.string("family"), familySource: f.has("family_source") ? try f.string("family_source")
            : "not recorded (an older report)",
                  embedDim: try f.int("embed_dim"), depth: try f.int("depth"),
                  heads: try f.int("heads"), headsSource: try f.string("heads_source"),
                      patchSize: try f.int("patch_size"),
                  checkpointImageSize: try f.int("checkpoint_image_size"), imageSize: try f.int("image_size"),
                  tokens: try f.int("tokens"), prefixTokens: try f.int("prefix_tokens"),
                  registerTokens: try f.int("register_tokens"), prefixPositionRows: try f.int("prefix_position_rows"),
                  layerScale: try f.bool("layer_scale"), preNorm: try f.bool("pre_norm"),
                  activation: try f.string("activation"), activationSource: try f.string("activation_source"),
                  classToken: try f.bool("class_token"), absolutePositions: try f.bool("absolute_positions"),
                  relativePositionBias: try f.string("relative_position_bias"), mlpHidden: try f.int("mlp_hidden"),
                  qkvBias: try f.bool("qkv_bias"), finalNorm: try f.string("final_norm"),
                  layerNormEps: try f.double("layer_norm_eps"), parameters: try f.int("parameters"),
                  precision: try f.string("precision"))
        if f.has("norm") { norm = try f.string("norm") }
        if f.has("mlp") { mlp = try f.string("mlp") }
        if f.has("rotary") { rotary = try f.string("rotary") }
    }
}

/// A checkpoint as every report records it: file, hash, layout, architecture.
public struct ModelRecord: JSONRecord, Equatable {
    public var name, path, sha256, format, layout, stateDict: String
    public var architecture: ArchitectureRecord

    public init(name: String, path: String, sha256: String, format: String, layout: String, stateDict: String,
                architecture: ArchitectureRecord) {
        (self.name, self.path, self.sha256, self.format, self.layout) = (name, path, sha256, format, layout)
        (self.stateDict, self.architecture) = (stateDict, architecture)
    }

    /// The fields before the architecture (extract's meta.json records them apart from it).
    var fileFields: [(String, JSONValue)] {
        [("name", .string(name)), ("path", .string(path)), ("sha256", .string(sha256)),
         ("format", .string(format)), ("layout", .string(layout)), ("state_dict", .string(stateDict))]
    }

    public var json: JSONValue { .object(fileFields + [("architecture", architecture.json)]) }

    public init(json: JSONValue) throws {
        let f = try JSONFields(json, record: "model")
        self.init(name: try f.string("name"), path: try f.string("path"), sha256: try f.string("sha256"),
                  format: try f.string("format"), layout: try f.string("layout"), stateDict: try f.string("state_dict"),
                  architecture: try ArchitectureRecord(json: try f.raw("architecture")))
    }
}

/// A feature or attention array computed elsewhere, as reports record it.
public struct ArrayRecord: JSONRecord, Equatable {
    public enum Kind: String, Sendable { case features, attention }
    public var kind: Kind
    public var name, path, sha256, dtype: String
    public var shape: [Int]
    public var prefixTokens: Int
    /// Pixels per patch of the model the attention came from (attention arrays only; nil: unknown).
    public var patchSize: Int?

    public init(kind: Kind, name: String, path: String, sha256: String, dtype: String, shape: [Int], prefixTokens: Int,
                patchSize: Int? = nil) {
        (self.kind, self.name, self.path, self.sha256, self.dtype) = (kind, name, path, sha256, dtype)
        (self.shape, self.prefixTokens, self.patchSize) = (shape, prefixTokens, patchSize)
    }

    public var json: JSONValue {
        var fields: [(String, JSONValue)] = [
            ("name", .string(name)), (kind.rawValue, .string(path)), ("sha256", .string(sha256)),
            ("dtype", .string(dtype)), ("shape", .array(shape.map { .int($0) })), ("prefix_tokens", .int(prefixTokens)),
        ]
        if kind == .attention { fields.append(("patch_size", patchSize.map { .int($0) } ?? .null)) }
        return .object(fields)
    }

    public init(json: JSONValue) throws {
        let f = try JSONFields(json, record: "array")
        let kind: Kind = f.has("attention") ? .attention : .features
        self.init(
            kind: kind, name: try f.string("name"), path: try f.string(kind.rawValue), sha256: try f.string("sha256"),
                  dtype: try f.string("dtype"), shape: try f.ints("shape"), prefixTokens: try f.int("prefix_tokens"),
                  patchSize: kind == .attention ? try f.optionalInt("patch_size") : nil)
    }
}

/// One side of a comparison as a report records it.
public enum SideRecord: JSONRecord, Equatable {
    case model(ModelRecord)
    case array(ArrayRecord)
    /// Model B of a model compared with itself.
    case sameAsA

    static let sameText = "same as model_a"

    /// The display name (nil for `sameAsA`).
    public var name: String? {
        switch self { case let .model(m): return m.name; case let .array(a): return a.name; case .sameAsA: return nil }
    }
    public var architecture: ArchitectureRecord? {
        if case let .model(m) = self { return m.architecture }
        return nil
    }

    public var json: JSONValue {
        switch self {
        case let .model(m): return m.json
        case let .array(a): return a.json
        case .sameAsA: return .string(Self.sameText)
        }
    }

    public init(json: JSONValue) throws {
        if json.stringValue == Self.sameText { self = .sameAsA; return }
        let f = try JSONFields(json, record: "model")
        self = f.has("architecture") ? .model(try ModelRecord(json: json)) : .array(try ArrayRecord(json: json))
    }
}

/// A report's top-level `setup` holds a command name; reading checks it.
func checkCommand(_ f: JSONFields, _ expected: String) throws {
    let c = try f.string("command")
    guard c == expected else { throw f.missing("command", "is '\(c)', not '\(expected)'") }
}

/// A model's display name as an older report records it (from its path) when it has no name.
func displayName(_ model: JSONValue?) -> String? {
    model?["name"]?.stringValue ?? model?["path"]?.stringValue.map(modelName)
}
