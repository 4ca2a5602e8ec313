import Foundation

/// A folder written by `vitlens extract`: one of its arrays, and what meta.json says of it.
struct ExtractFolder {
    let file: String
    /// Leading class/register tokens of the array's token axis.
    let prefixTokens: Int
    /// Pixels per patch of the model (nil when meta.json does not say).
    let patchSize: Int?

    /// nil when `path` is not a folder; an error when it is one without the extract's meta.json.
    init?(_ path: String, file name: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else { return nil }
        // What is read of meta.json: the architecture's prefix tokens and patch size, and the arrays written.
        guard let data = FileManager.default.contents(atPath: path + "/meta.json"),
              let json = try? JSONValue.parse(String(decoding: data, as: UTF8.self)),
              let meta = try? JSONFields(json, record: "meta.json"),
              let architecture = try? meta.object("architecture"),
              let prefix = try? architecture.int("prefix_tokens") else {
            throw ArrayError.notExtractFolder(path: path)
        }
        guard let entry = try? meta.object("files").object(name), entry.has("shape") else {
            throw ArrayError.extractLacks(path: path, file: name)
        }
        file = path + "/" + name
        prefixTokens = (try? entry.int("prefix_tokens")) ?? prefix
        patchSize = try? architecture.int("patch_size")
    }
}
