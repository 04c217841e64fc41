import Foundation
import GRDB
@testable import RolloutKit
import Testing

/// No credential is stored, shown or accepted as a literal: secrets in use are masked wherever
/// a peer's text is shown or stored (whatever their shape), and literal secrets are refused in
/// `ingest server` and the model registry with the place and the fix.
@Suite("Secrets")
struct SecretsTests {
    /// The key of issue 14: not shaped like an OpenAI key, so only the registry can catch it.
    static let key = "vllm-private-token-0042"

    /// A one-thread HTTP server on 127.0.0.1 answering every request with 401 and an OpenAI-style
    /// error that echoes `key`, as OpenAI and vLLM's auth proxies do.
    /// `@unchecked Sendable`: `fd` is set once in `init`; the accept thread only reads it.
    final class EchoingUnauthorizedServer: @unchecked Sendable {
        let fd: Int32
        let port: Int
        let body: String

        init(echoing key: String) throws {
            body = #"{"error":{"message":"Incorrect API key provided: \#(key). You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","code":"invalid_api_key"}}"#
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            self.fd = fd
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = 0
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0, listen(fd, 64) == 0 else { throw EngineError("cannot listen on 127.0.0.1") }
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            port = Int(UInt16(bigEndian: addr.sin_port))
            let thread = Thread { [self] in acceptLoop() }
            thread.start()
        }

        private func acceptLoop() {
            while true {
                let c = accept(fd, nil, nil)
                if c < 0 { return }
                answer(c)
            }
        }

        /// Reads one request (headers, then Content-Length bytes) and answers 401.
        private func answer(_ c: Int32) {
            defer { close(c) }
            var data: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = read(c, &buffer, buffer.count)
                if n <= 0 { return }
                data += buffer[0..<n]
                let text = String(decoding: data, as: UTF8.self)
                guard let end = text.range(of: "\r\n\r\n") else { continue }
                let head = text[..<end.lowerBound].lowercased()
                let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                    .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                if text.utf8.count - text[..<end.upperBound].utf8.count >= length { break }
            }
            let response = "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
            _ = Array(response.utf8).withUnsafeBytes { write(c, $0.baseAddress, $0.count) }
        }

        func stop() {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
        }
    }

    /// Runs the built binary in `dir` with `environment` added.
    static func rollout(_ arguments: [String], in dir: URL, environment extra: [String: String] = [:]) throws -> CLITests.Result {
        try CLITests.rollout(arguments, in: dir, environment: extra.mapValues { $0 }, binary: EngineHarness.binary)
    }

    // MARK: - Masking

    @Test func aSecretInUseIsMaskedWhateverItsShape() {
        let value = "plain-looking-\(UUID().uuidString.prefix(8))"
        #expect(Secrets.mask("rejected \(value) at the door") == "rejected \(value) at the door", "not registered yet")
        Secrets.register(value)
        #expect(Secrets.mask("rejected \(value) at the door") == "rejected [redacted] at the door")
        #expect(Secrets.maskRegistered("tool says: \(value)\n") == "tool says: [redacted]\n")
        // Placeholders and short values are never registered (they would mask ordinary words).
        for harmless in ["EMPTY", "none", "dummy", "hunter2", "/usr/local/bin", "https://example.com/v1", "2025-03-26", "12345678"] {
            Secrets.register(harmless)
            #expect(Secrets.maskRegistered("a \(harmless) b") == "a \(harmless) b")
        }
        // A URL's password is registered on its own; the rest of the URL stays readable.
        let password = "pw-\(UUID().uuidString.prefix(12))"
        Secrets.register("postgres://user:\(password)@db.internal/app")
        #expect(Secrets.maskRegistered("login failed for \(password)") == "login failed for [redacted]")
    }

    @Test(arguments: [
        ("Incorrect API key provided: sk-proj-abcdefghijklmnop1234.", "Incorrect API key provided: sk-[redacted]."),
        ("got sk-ant-api03-AAAAAAAAAAAAAAAA", "got sk-[redacted]"),
        ("header Authorization: Bearer eyJhbGciOi.J9.x-yz_123; retry", "header Authorization: Bearer [redacted]; retry"),
        (#"{"authorization":"Basic dXNlcjpwYXNzd29yZA=="}"#, #"{"authorization":"Basic [redacted]"}"#),
        ("authorization=tok_9f8e7d6c5b", "authorization=[redacted]"),
        ("x-api-key: abcdef0123456789", "x-api-key: [redacted]"),
        ("connect postgres://app:SECRETPW@db.internal:5432/app failed", "connect postgres://app:[redacted]@db.internal:5432/app failed"),
        ("push with ghp_abcdefghijklmnopqrstuvwxyz0123456789", "push with ghp_[redacted]"),
        ("token github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "token github_pat_[redacted]"),
        ("slack xoxb-1234567890-abcdefghij said no", "slack xoxb-[redacted] said no"),
        ("aws AKIAIOSFODNN7EXAMPLE denied", "aws AKIA[redacted] denied"),
        ("hub hf_abcdefghijklmnopqrstuvwxyzAB", "hub hf_[redacted]"),
        ("?api_key=abc123def456&x=1", "?api_key=[redacted]&x=1"),
    ])
    func credentialShapesAreMasked(input: String, expected: String) {
        #expect(Secrets.mask(input) == expected)
    }

    @Test(arguments: [
        "Basic authentication is required",
        "task-1234567890 and sk-short",
        "from huggingface_hub import hf_hub_download",
        "write api_key: ${OPENAI_API_KEY} (or api_key: <literal>)",
        "https://api.openai.com/v1/chat/completions returned 500",
        "Authorization header missing",
        "the mapping key \"max_tokens\" is unknown",
        "ASIAN markets, PATH=/usr/bin",
        "--env #1: AUTHORIZATION: holds a Bearer credential; use ${VAR}: --env 'AUTHORIZATION=${AUTHORIZATION}'",
        "--env #1: API_KEY: the default in ${…:-…} is a literal secret; drop the default",
        "--arg #1: --api-key: holds a key of a well-known shape (sk-…); use ${VAR}: --arg '--api-key=${VAR}'",
        "x-api-key: EMPTY",
    ])
    func ordinaryTextIsLeftAlone(text: String) {
        #expect(Secrets.mask(text) == text)
    }

    // MARK: - A 401 that echoes the key

    @Test func aModelErrorEchoingTheKeyCarriesNoKey() async throws {
        let server = try EchoingUnauthorizedServer(echoing: Self.key)
        defer { server.stop() }
        let client = LLMClient(maxConnectionsPerHost: 4)
        let entry = ModelEntry(name: "leaky/model", provider: .openai, apiBase: "http://127.0.0.1:\(server.port)/v1",
                               apiKey: "${ROLLOUT_TEST_LEAKY_KEY}", settings: [:])
        let endpoint = try Endpoint(entry: entry, environment: ["ROLLOUT_TEST_LEAKY_KEY": Self.key])
        let attempts = LLMClientTests.Attempts()
        let request = ChatRequest(model: "m", messages: [ChatMessage(role: "user", content: "hi")], options: ChatOptions())
        let error = await #expect(throws: LLMError.self) {
            try await client.complete(request, endpoint: endpoint, policy: LLMClientTests.quick, onAttempt: attempts.add)
        }
        try await client.shutdown()
        let e = try #require(error)
        #expect(e.status == 401)
        #expect(e.description.contains("Incorrect API key provided: [redacted]"), "\(e.description)")
        #expect(!e.description.contains(Self.key))
        #expect(!attempts.all.isEmpty)
        #expect(attempts.all.allSatisfy { !($0.error ?? "").contains(Self.key) })
    }

    @Test(.enabled(if: EngineHarness.binaryBuilt, "build the rollout executable first"))
    func aRunAgainstA401LeavesTheKeyNowhere() async throws {
        let server = try EchoingUnauthorizedServer(echoing: Self.key)
        defer { server.stop() }
        let dir = try TempDir()
        let w = try EngineHarness.exampleWarehouse(dir)
        _ = try dir.write("models.yml", """
            models:
              mock/user: {provider: mock, mode: user}
              leaky/agent:
                provider: openai
                api_base: http://127.0.0.1:\(server.port)/v1
                api_key: ${ROLLOUT_TEST_LEAKY_KEY}
            """)
        let result = try Self.rollout(["run", "single", "--domains", "Library", "--models", "models.yml", "--agent-model", "leaky/agent",
                                       "--user-model", "mock/user", "--run", "leak", "--quiet"],
                                      in: dir.url, environment: ["ROLLOUT_TEST_LEAKY_KEY": Self.key])
        // The run failed on the 401 and said so, masked.
        #expect(result.stderr.contains("401"), "\(result.stderr)")
        #expect(result.stderr.contains("[redacted]"), "\(result.stderr)")
        #expect(!result.stderr.contains(Self.key))
        #expect(!result.stdout.contains(Self.key))
        // The ledger and the rollouts hold the error, masked; no table holds the key.
        let callErrors = try w.strings("SELECT error FROM llm_calls WHERE error IS NOT NULL")
        #expect(!callErrors.isEmpty && callErrors.allSatisfy { $0.contains("Incorrect API key provided: [redacted]") }, "\(callErrors)")
        let rolloutErrors = try w.strings("SELECT error FROM rollouts WHERE error IS NOT NULL")
        #expect(!rolloutErrors.isEmpty && rolloutErrors.allSatisfy { $0.contains("[redacted]") }, "\(rolloutErrors)")
        let dump = try w.snapshot()
        for (table, rows) in dump {
            #expect(!rows.contains { $0.contains(Self.key) }, "table \(table) holds the key")
        }
        // The viewer shows the stored error, masked.
        let failed = try #require(try w.int("SELECT id FROM rollouts WHERE error IS NOT NULL ORDER BY id LIMIT 1"))
        let page = try await ViewerHarness.with(w) { h in try await h.get("/rollouts/\(failed)") }
        #expect(page.status == 200)
        #expect(page.body.contains("[redacted]"))
        #expect(!page.body.contains(Self.key))
    }

    // MARK: - MCP servers

    @Test func anMCPServerPrintingItsTokenOnStderrDoesNotLeakIt() async throws {
        let token = "svc-private-\(UUID().uuidString.prefix(12))"
        let argument = "arg-private-\(UUID().uuidString.prefix(12))"
        // The server prints its environment token and its (expanded) argument to stderr, then dies.
        let spec = MCPServerSpec(name: "leaky", command: "/bin/sh",
                                 args: ["-c", "echo \"token=$SERVICE_TOKEN arg=$1\" >&2; exit 3", "sh", "${ROLLOUT_TEST_ARG}"],
                                 env: ["SERVICE_TOKEN": "${ROLLOUT_TEST_SERVICE_TOKEN}"])
        let environment = ProcessInfo.processInfo.environment.merging(
            ["ROLLOUT_TEST_SERVICE_TOKEN": token, "ROLLOUT_TEST_ARG": argument]) { $1 }
        let client = MCPClient(spec: spec, environment: environment)
        let error = await #expect(throws: MCPError.self) { _ = try await client.listTools() }
        await client.shutdown()
        let text = try #require(error).description
        #expect(text.contains("token=[redacted] arg=[redacted]"), "\(text)")
        #expect(!text.contains(token) && !text.contains(argument))
    }

    @Test func aToolResultEchoingTheServersTokenIsStoredMasked() async throws {
        let token = "svc-result-\(UUID().uuidString.prefix(12))"
        // A minimal MCP server: answers initialize, then one tools/call with a text that quotes
        // its own token and, as documentation might, a Bearer example.
        let script = #"""
            id() { printf '%s\n' "$1" | sed -n 's/.*"id":\([0-9][0-9]*\).*/\1/p'; }
            read -r init
            echo "{\"jsonrpc\":\"2.0\",\"id\":$(id "$init"),\"result\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{\"tools\":{}},\"serverInfo\":{\"name\":\"echoer\",\"version\":\"1\"}}}"
            read -r initialized
            read -r request
            echo "{\"jsonrpc\":\"2.0\",\"id\":$(id "$request"),\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"connected with $SERVICE_TOKEN; docs say: Authorization: Bearer abcdefgh12345678\"}]}}"
            read -r _ || true
            """#
        let spec = MCPServerSpec(name: "echoer", command: "/bin/sh", args: ["-c", script],
                                 env: ["SERVICE_TOKEN": "${ROLLOUT_TEST_RESULT_TOKEN}"])
        let environment = ProcessInfo.processInfo.environment.merging(["ROLLOUT_TEST_RESULT_TOKEN": token]) { $1 }
        let router = ToolRouter(servers: [spec], environment: environment)
        var toolset = Toolset()
        toolset.routes["status"] = Toolset.Route(server: "echoer", serverID: 1, name: "status")
        let answer = await router.call(ToolCall(id: "c1", name: "status", arguments: "{}"), toolset: toolset,
                                       session: ToolSession(id: "s1", values: [:]))
        await router.shutdown()
        #expect(!answer.isError, "\(answer.text)")
        // The secret in use is masked; text that only looks like a credential is left as data.
        #expect(answer.text == "connected with [redacted]; docs say: Authorization: Bearer abcdefgh12345678")
    }

    // MARK: - Refusing literal secrets

    @Test(arguments: [
        ("GITHUB_PAT=ghp_abcdefghijklmnopqrstuvwxyz0123456789", "GITHUB_PAT", "ghp_abcdefghij"),
        ("AUTHORIZATION=Bearer sk-live-abcdefghijkl", "AUTHORIZATION", "sk-live-abcdefghijkl"),
        ("DATABASE_URL=postgres://u:SECRETPW@h/db", "DATABASE_URL", "SECRETPW"),
        ("PASS=hunter2", "PASS", "hunter2"),
        ("SESSION_COOKIE=sid=4f3e2d1c0b", "SESSION_COOKIE", "4f3e2d1c0b"),
        ("API_KEY=${API_KEY:-sk-default}", "API_KEY", "sk-default"),
        ("OPENAI_API_KEY=sk-abc123456789", "OPENAI_API_KEY", "sk-abc123456789"),
    ])
    func literalSecretsInServerEnvAreRefused(pair: String, key: String, secret: String) throws {
        let w = try Warehouse.inMemory()
        let error = try expectIngestError(w) {
            try w.ingestServer(name: "leaky", command: "server", env: ["MODE=test", pair])
        }
        #expect(error.file == "--env #2")
        #expect(error.field == key)
        #expect(error.reason.contains("use ${VAR}"))
        #expect(!error.description.contains(secret))
    }

    @Test(arguments: [
        (["--api-key=sk-abcdef0123456789"], "--arg #1", "sk-abcdef0123456789"),
        (["serve", "--token", "tok9f8e7d6c5b4a"], "--arg #3", "tok9f8e7d6c5b4a"),
        (["--db", "postgres://app:SECRETPW@db/app"], "--arg #2", "SECRETPW"),
        (["--header", "Authorization: Bearer abcdefgh12345678"], "--arg #2", "abcdefgh12345678"),
    ])
    func literalSecretsInServerArgsAreRefused(args: [String], place: String, secret: String) throws {
        let w = try Warehouse.inMemory()
        let error = try expectIngestError(w) { try w.ingestServer(name: "leaky", command: "server", args: args) }
        #expect(error.file == place)
        #expect(error.reason.contains("use ${VAR}"))
        #expect(!error.description.contains(secret))
    }

    @Test func referencesPlaceholdersAndPlainValuesAreAccepted() throws {
        let w = try Warehouse.inMemory()
        let env = ["API_KEY=${API_KEY}", "AUTHORIZATION=Bearer ${TOKEN}", "LOCAL_API_KEY=EMPTY", "PASSWORD=",
                   "DATABASE_URL=postgres://u:${DB_PASSWORD}@h/db", "GOOGLE_APPLICATION_CREDENTIALS=/etc/creds.json",
                   "NO_AUTH=1", "TOKEN_FILE=/run/secrets/token", "MAX_TOKENS=4096", "STATE=${ROLLOUT_STATE_DIR}",
                   "API_KEY_ENV=OPENAI_API_KEY", "BASE_URL=https://api.example.com/v1"]
        let args = ["-m", "mcp_server_time", "--local-timezone=UTC", "--api-key=${API_KEY}", "--token", "${TOKEN}",
                    "--no-auth", "--port", "8080"]
        let report = try w.ingestServer(name: "ok", command: "python3", args: args, env: env)
        #expect(report["servers"].inserted == 1)
    }

    @Test(.enabled(if: EngineHarness.binaryBuilt, "build the rollout executable first"))
    func theCLIRefusesALiteralEnvSecretAndStoresNothing() throws {
        let dir = try TempDir()
        let ok = try Self.rollout(["ingest", "server", "first", "--command", "true", "--env", "MODE=test"], in: dir.url)
        #expect(ok.status == 0, "\(ok.stderr)")
        let w = try Warehouse.open(path: dir.file("rollout.db"))
        let before = try w.snapshot()
        let refused = try Self.rollout(["ingest", "server", "leaky", "--command", "true", "--env", "MODE=test", "--env", "PASS=hunter2"],
                                       in: dir.url)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("--env #2: PASS:"), "\(refused.stderr)")
        #expect(refused.stderr.contains("--env 'PASS=${PASS}'"), "\(refused.stderr)")
        #expect(!refused.stderr.contains("hunter2"))
        // The CLI masks what it prints, and its own advice survives that.
        let bearer = try Self.rollout(["ingest", "server", "leaky", "--command", "true", "--env", "AUTHORIZATION=Bearer sk-live-abcdefghijkl"],
                                      in: dir.url)
        #expect(bearer.status != 0)
        #expect(bearer.stderr.contains("--env #1: AUTHORIZATION: holds a Bearer credential; use ${VAR}: --env 'AUTHORIZATION=${AUTHORIZATION}'"),
                "\(bearer.stderr)")
        #expect(!bearer.stderr.contains("sk-live-abcdefghijkl") && !bearer.stderr.contains("[redacted]"))
        #expect(try w.snapshot() == before)
    }

    static func registryError(_ entry: String) throws -> ConfigError {
        let dir = try TempDir()
        let file = try dir.write("models.yml", "models:\n  mock/agent: {provider: mock, mode: agent}\n" + entry)
        return try #require(throws: ConfigError.self) { _ = try ModelRegistry.load(file: file) }
    }

    @Test(arguments: [
        ("  local/a:\n    provider: openai\n    api_key: ${LOCAL_KEY:-sk-default-123456}\n", 5, "local/a.api_key", "sk-default-123456"),
        ("  local/b:\n    provider: openai\n    api_base: http://user:pw-secret-1@gpu-box:8000/v1\n", 5, "local/b.api_base", "pw-secret-1"),
        ("  local/c:\n    provider: openai\n    api_key: ${KEY}\n    headers:\n      Authorization: Bearer abcdefgh12345678\n",
         7, "local/c.headers.Authorization", "abcdefgh12345678"),
        ("  local/d:\n    provider: openai\n    api_key: ${KEY}\n    extra_headers: {x-api-key: hunter2hunter2}\n",
         6, "local/d.extra_headers.x-api-key", "hunter2hunter2"),
        ("  local/e:\n    provider: openai\n    api_key: ${KEY}\n    note: ghp_abcdefghijklmnopqrstuvwxyz0123456789\n",
         6, "local/e.note", "ghp_abcdefghij"),
    ])
    func literalSecretsInTheModelRegistryAreRefused(entry: String, line: Int, keyPath: String, secret: String) throws {
        let error = try Self.registryError(entry)
        #expect(error.line == line, "\(error)")
        #expect(error.keyPath == "models.\(keyPath)", "\(error)")
        #expect(error.reason.contains("use ${VAR}"))
        #expect(!error.description.contains(secret))
    }

    @Test func placeholdersAndReferencesStillLoad() throws {
        // The shipped registry (and its README twin) must keep loading.
        let shipped = try ModelRegistry.load(file: CLITests.root.appending(path: "configs/models.yml").path)
        #expect(shipped.entry(named: "vllm/qwen3-8b")?.apiKey == "EMPTY")
        let dir = try TempDir()
        let file = try dir.write("models.yml", """
            models:
              local/a: {provider: openai, api_base: "http://localhost:8000/v1", api_key: EMPTY}
              local/b: {provider: openai, api_base: "http://localhost:8000/v1", api_key: none}
              local/c: {provider: openai, api_base: "${VLLM_BASE:-http://localhost:8000/v1}", api_key: "${VLLM_KEY:-EMPTY}"}
              local/d:
                provider: openai
                api_key: ${KEY}
                headers: {Authorization: "Bearer ${TOKEN}", X-Title: rollout}
                max_tokens: 4096
                tokenizer: Qwen/Qwen3-8B
            """)
        let registry = try ModelRegistry.load(file: file)
        #expect(registry.entries.count == 4)
    }

    @Test(.enabled(if: EngineHarness.binaryBuilt, "build the rollout executable first"))
    func aRefusedRegistryLeavesTheModelsTableAsItWas() throws {
        let dir = try TempDir()
        let w = try EngineHarness.exampleWarehouse(dir)
        _ = try dir.write("models.yml", """
            models:
              mock/user: {provider: mock, mode: user}
              leaky/agent: {provider: openai, api_base: "http://u:pw-in-url-77@127.0.0.1:1/v1", api_key: EMPTY}
            """)
        let before = try w.snapshot()
        let result = try Self.rollout(["run", "single", "--domains", "Library", "--models", "models.yml", "--agent-model", "leaky/agent",
                                       "--user-model", "mock/user", "--run", "leak", "--quiet"], in: dir.url)
        #expect(result.status != 0)
        #expect(result.stderr.contains("models.yml:3: models.leaky/agent.api_base:"), "\(result.stderr)")
        #expect(!result.stderr.contains("pw-in-url-77"))
        #expect(try w.snapshot() == before)
    }
}
