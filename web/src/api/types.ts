/** Shapes of the objects the app service returns (docs/app_api.md, docs/protocol.md). */

export interface User {
  id: string;
  username: string;
  is_admin: boolean;
  created_at: number;
}

export interface ConversationSettings {
  model: string;
  system_prompt: string;
  temperature: number | null;
  top_p: number | null;
  max_tokens: number | null;
}

export interface Conversation extends ConversationSettings {
  id: string;
  title: string;
  created_at: number;
  updated_at: number;
}

/** A conversation as the list gives it: in search results (`GET /api/conversations?q=`),
 * with the best message that matched, or null when only the title did. */
export interface ListedConversation extends Conversation {
  match?: SearchMatch | null;
}

/** Where a search matched inside a conversation: a snippet of the message and the [start,
 * end) offsets of the matched words in it. */
export interface SearchMatch {
  message_id: string;
  role: 'user' | 'assistant';
  snippet: string;
  highlights: [number, number][];
}

export type MessageStatus = 'complete' | 'streaming' | 'stopped' | 'failed';

export interface Attachment {
  id: string;
  name: string;
}

export interface Source {
  file_id: string;
  file_name: string;
  ordinal: number | null;
}

export interface Message {
  id: string;
  conversation_id: string;
  /** The message it follows (null: the first); a conversation is a tree of branches. */
  parent_id: string | null;
  /** Its own id and its siblings' (same parent), oldest first: `‹ 2/3 ›` when more than one. */
  sibling_ids: string[];
  role: 'user' | 'assistant';
  content: string;
  status: MessageStatus;
  attachments: Attachment[];
  sources: Source[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
  finish_reason: string | null;
  error: string | null;
  created_at: number;
  /** When an answer ended (with `created_at`, how long it took); null while it streams. */
  finished_at: number | null;
  /** The model that wrote an answer; null for questions and answers stored before it was kept. */
  model: string | null;
}

export interface ConversationWithMessages extends Conversation {
  messages: Message[];
}

export interface UploadedFile {
  id: string;
  name: string;
  kind: string;
  size: number;
  created_at: number;
  chunk_count: number;
  chars: number;
}

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
  revoked: boolean;
}

export interface NewApiKey {
  id: string;
  name: string;
  prefix: string;
  created_at: number;
  key: string;
}

export interface Health {
  status: string;
  version: string;
  model_api: {
    reachable: boolean;
    upstreams: { url: string; healthy: boolean; models: string[] | null; error: string | null }[];
  };
}

/** Frames the server sends over /ws (docs/protocol.md). Every frame of every turn of the
 * account reaches every socket of the account. The fields are exactly those the app
 * service's frame models send (tests/unit/test_frames.py compares them); `?` marks a field
 * that is absent unless set. */
export type ServerFrame =
  | { type: 'ready' }
  | { type: 'pong' }
  | { type: 'user_message'; conversation_id: string; message: Message; conversation: Conversation; request_id: string }
  | { type: 'start'; conversation_id: string; message: Message; request_id: string }
  | { type: 'delta'; conversation_id: string; message_id: string; seq: number; content: string }
  | { type: 'resume'; conversation_id: string; message: Message | null; seq: number; request_id: string }
  | { type: 'idle'; conversation_id: string }
  | { type: 'conversation'; conversation: Conversation }
  | { type: 'conversation_deleted'; conversation_id: string }
  | {
      type: 'done';
      conversation_id: string;
      message: Message;
      usage: Message['usage'];
      finish_reason: string | null;
      sources: Source[];
      request_id: string;
      discarded_message_id?: string;
    }
  | {
      type: 'error';
      conversation_id: string | null;
      error: string;
      code: string | null;
      message: Message | null;
      request_id?: string;
      discarded_message_id?: string;
    };

/** Per-turn overrides of the conversation's settings (`settings` on send, edit, regenerate, continue). */
export type TurnSettings = Partial<ConversationSettings>;

/** Frames the browser sends over /ws. */
export type ClientFrame =
  | { type: 'send'; conversation_id: string; content: string; file_ids?: string[]; settings?: TurnSettings }
  | {
      type: 'edit';
      conversation_id: string;
      message_id: string;
      content: string;
      file_ids?: string[];
      settings?: TurnSettings;
    }
  | { type: 'regenerate'; conversation_id: string; settings?: TurnSettings }
  | { type: 'continue'; conversation_id: string; settings?: TurnSettings }
  | { type: 'stop'; conversation_id?: string }
  | { type: 'resume'; conversation_id: string }
  | { type: 'ping' };

/** GET /api/admin/status: the app service, and each model server with its recent history. */
export interface AdminStatus {
  app: { status: string; version?: string | null; uptime_s?: number | null; open_websockets?: number | null };
  interval_s?: number | null;
  upstreams: UpstreamStatus[];
}

export interface UpstreamStatus {
  url: string;
  healthy: boolean;
  error?: string | null;
  /** The model server's /health; null while it does not answer. */
  health?: {
    status?: string | null;
    model?: string | null;
    device?: string | null;
    dtype?: string | null;
    quantization?: string | null;
    version?: string | null;
    running?: number | null;
    waiting?: number | null;
    /** Only the batching engine reports these. */
    batch_size?: number | null;
    kv_cache_tokens?: number | null;
    kv_cache_capacity_tokens?: number | null;
  } | null;
  gpus?: { available: boolean; devices?: GpuDevice[] | null } | null;
  history?: StatusSample[] | null;
}

export interface GpuDevice {
  index: number;
  name?: string | null;
  utilization_pct?: number | null;
  memory_used_mb?: number | null;
  memory_total_mb?: number | null;
  temperature_c?: number | null;
  power_w?: number | null;
}

/** One sample of an upstream's load; `t` is a Unix time in seconds. */
export interface StatusSample {
  t: number;
  tokens_per_s?: number | null;
  ttft_avg_s?: number | null;
  running?: number | null;
  waiting?: number | null;
  gpu_utilization_pct?: number | null;
  gpu_memory_used_mb?: number | null;
}
