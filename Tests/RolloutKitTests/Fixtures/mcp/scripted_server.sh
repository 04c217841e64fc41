#!/bin/sh
# A scripted MCP server for MCPTests (no dependencies beyond sh and sed). It prints a banner,
# sends the client a ping and an unsupported request before answering initialize, answers
# initialize with protocol version $MCP_TEST_VERSION, then answers the first request with
# what it saw: the client's replies to its two requests, the request's params, and an image
# block. Then it exits.
field_id() { printf '%s\n' "$1" | sed -n 's/.*"id":\([0-9][0-9]*\).*/\1/p'; }
quote() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }

echo "scripted server starting (this line is not JSON)"
read -r init
init_id=$(field_id "$init")
echo '{"jsonrpc":"2.0","id":"srv-1","method":"ping"}'
echo '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"hello"}}'
echo '{"jsonrpc":"2.0","id":"srv-2","method":"sampling/createMessage","params":{}}'
read -r ping_answer
read -r sampling_answer
echo "{\"jsonrpc\":\"2.0\",\"id\":$init_id,\"result\":{\"protocolVersion\":\"$MCP_TEST_VERSION\",\"capabilities\":{\"tools\":{}},\"serverInfo\":{\"name\":\"scripted\",\"version\":\"1\"}}}"
read -r initialized
read -r request
request_id=$(field_id "$request")
params=$(printf '%s\n' "$request" | sed -n 's/.*"params":\(.*\)}$/\1/p')
printf '{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"ping answer: %s"},{"type":"text","text":"sampling answer: %s"},{"type":"text","text":"request params: %s"},{"type":"image","data":"AAAA","mimeType":"image/png"}]}}\n' \
  "$request_id" "$(quote "$ping_answer")" "$(quote "$sampling_answer")" "$(quote "$params")"
read -r _ || true
