import Foundation
import RolloutKit
import Testing

/// Our client against an independent mock server, `fakellm` (PyPI), installed by
/// scripts/install-deps.sh --test: a second implementation of the wire formats checks ours.
@Suite("fakellm integration", .serialized)
struct FakeLLMTests {
    static let available: Bool = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import fakellm"]
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }()

    static let config = """
        version: 1
        defaults:
          fallback: deterministic_echo
        rules:
          - name: overloaded
            when: {messages_contain: "overloaded"}
            respond: {status: 503, error: "the fake is overloaded"}
          - name: refused
            when: {messages_contain: "refuse this"}
            respond: {status: 400, error: "bad request from the fake"}
          - name: tool_turn
            when: {messages_contain: "balance"}
            respond:
              tool_calls:
                - name: get_card
                  arguments: {card_id: "C-7788"}
          - name: answer
            when: {messages_contain: "hello"}
            respond: {content: "Hello from fakellm."}
        """

    /// Starts `fakellm serve` on a free-ish port and waits until it answers.
    static func withFakeLLM(config: String = Self.config, _ body: (Int, LLMClient) async throws -> Void) async throws {
        let dir = FileManager.default.temporaryDirectory.appending(path: "fakellm-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let configFile = dir.appending(path: "fakellm.yaml")
        try config.write(to: configFile, atomically: true, encoding: .utf8)
        let port = Int.random(in: 21000..<39000)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "from fakellm.cli import main; main()", "serve",
                             "--config", configFile.path, "--port", String(port)]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            // uvicorn shuts down gracefully on SIGTERM; give it a moment, then make sure.
            process.terminate()
            for _ in 0..<30 where process.isRunning { usleep(100_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        // Python with uvicorn can take many seconds to start on a loaded 2-core machine: wait
        // up to two minutes, but give up at once if the process died.
        var ready = false
        let deadline = ContinuousClock.now + .seconds(120)
        while !ready && process.isRunning && ContinuousClock.now < deadline {
            ready = canConnect(port: port)
            if !ready { try await Task.sleep(for: .milliseconds(100)) }
        }
        try #require(ready, "fakellm did not start on port \(port) (\(process.isRunning ? "no answer within 120 s" : "it exited with status \(process.terminationStatus)"))")
        let client = LLMClient()
        do {
            try await body(port, client)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    /// True when something accepts TCP connections on 127.0.0.1:port.
    static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    static func request(_ text: String) -> ChatRequest {
        ChatRequest(model: "gpt-4o-mini", messages: [ChatMessage(role: "user", content: text)],
                    tools: [ToolSpecification(name: "get_card", parameters: .object([
                        "type": "object", "properties": .object(["card_id": .object(["type": "string"])])]))],
                    options: ChatOptions(maxTokens: 64))
    }

    static let policy = RetryPolicy(maxAttempts: 3, baseDelay: 0.01, maxDelay: 0.05, requestTimeout: 10)

    @Test(.enabled(if: available, "fakellm is not installed: scripts/install-deps.sh --test installs it"))
    func bothWireFormatsAgainstAnIndependentServer() async throws {
        try await Self.withFakeLLM { port, client in
            let openai = Endpoint(provider: .openai, apiBase: "http://127.0.0.1:\(port)/v1", apiKey: "not-used", model: "gpt-4o-mini")
            let anthropic = Endpoint(provider: .anthropic, apiBase: "http://127.0.0.1:\(port)", apiKey: "not-used", model: "claude-x")

            for endpoint in [openai, anthropic] {
                let call = try await client.complete(Self.request("What's the balance of my card?"), endpoint: endpoint, policy: Self.policy)
                #expect(call.message.toolCalls.count == 1)
                #expect(call.message.toolCalls.first?.name == "get_card")
                #expect(try JSONParser.parse(call.message.toolCalls.first?.arguments ?? "") == .object(["card_id": "C-7788"]))
                #expect(call.finishReason == (endpoint.provider == .openai ? "tool_calls" : "tool_use"))

                let text = try await client.complete(Self.request("hello there"), endpoint: endpoint, policy: Self.policy)
                #expect(text.message.content == "Hello from fakellm.")
                #expect(text.message.toolCalls.isEmpty)
                #expect((text.usage.promptTokens ?? 0) > 0)
            }
        }
    }

    @Test(.enabled(if: available, "fakellm is not installed: scripts/install-deps.sh --test installs it"))
    func errorsFromAnIndependentServer() async throws {
        try await Self.withFakeLLM { port, client in
            let openai = Endpoint(provider: .openai, apiBase: "http://127.0.0.1:\(port)/v1", apiKey: "not-used", model: "gpt-4o-mini")
            let attempts = LLMClientTests.Attempts()
            let overloaded = await #expect(throws: LLMError.self) {
                try await client.complete(Self.request("you are overloaded"), endpoint: openai, policy: Self.policy, onAttempt: attempts.add)
            }
            #expect(overloaded?.status == 503)
            #expect(overloaded?.message == "the fake is overloaded")
            #expect(attempts.all.count == 3)

            let refusedAttempts = LLMClientTests.Attempts()
            let refused = await #expect(throws: LLMError.self) {
                try await client.complete(Self.request("refuse this"), endpoint: openai, policy: Self.policy, onAttempt: refusedAttempts.add)
            }
            #expect(refused?.status == 400)
            #expect(refused?.message == "bad request from the fake")
            #expect(refusedAttempts.all.count == 1)
        }
    }
}
