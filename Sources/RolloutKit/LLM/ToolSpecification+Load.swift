import Foundation

extension ToolSpecification {
    /// Reads an OpenAI tool list file, checked like `rollout ingest tools` checks it.
    public static func load(file: String) throws -> [ToolSpecification] {
        let (_, doc) = try RecordFiles.readDocument(file)
        return try Warehouse.parseToolList(doc, file: file).map { spec in
            ToolSpecification(name: spec.name, description: spec.description,
                              parameters: spec.schema["function"]?["parameters"] ?? .object([:]),
                              strict: spec.schema["function"]?["strict"]?.boolValue)
        }
    }
}

/// The canonical response as JSON, for `rollout chat --json` and logs.
public enum ChatResponseJSON {
    public static func render(_ response: ChatResponse) -> String {
        MockServerWire.openAIResponse(response, created: Int(Date().timeIntervalSince1970)).jsonText
    }
}
