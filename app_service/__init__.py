"""The app service: accounts, conversations, uploads, WebSocket chat, /v1 pass-through."""
