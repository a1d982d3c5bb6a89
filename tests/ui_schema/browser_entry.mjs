// What tests/test_llm_front_ends.py loads in Chromium, bundled by esbuild: the AI SDK's chat
// (AbstractChat, which useChat wraps, and its DefaultChatTransport) and AG-UI's HttpAgent
// (what CopilotKit runs).
export { AbstractChat, DefaultChatTransport } from "ai";
export { HttpAgent } from "@ag-ui/client";
