/// The OpenAPI 3.0 description of what the server serves (GET /openapi.json). `maxTokens` is the largest context
/// among the served models (no request can ask for more).
enum OpenAPIDocument {
    static func json(maxTokens: Int) -> String {
        template.replacingOccurrences(of: "\"__MAX_TOKENS__\"", with: String(maxTokens))
    }

    private static let template = #"""
{
  "openapi": "3.0.3",
  "info": {
    "title": "Squish",
    "version": "1.0.0",
    "description": "OpenAI-compatible endpoints of `squish serve`: chat and text completions (streamed as server-sent events when `stream` is true), embeddings, models, health, Prometheus metrics. Sampling defaults follow OpenAI (temperature 1, top_p 1); `top_k`, `min_p`, `repeat_penalty` and `ignore_eos` are llama.cpp-style extensions; `presence_penalty` and `frequency_penalty` are accepted and not applied. `response_format` json_object / json_schema is enforced by constrained decoding. Log-probabilities are those of the model's own next-token distribution (softmax of the logits before temperature and filtering). Embeddings are the mean of the final normed hidden states over the input's tokens, L2-normalized."
  },
  "paths": {
    "/health": {
      "get": {
        "operationId": "health",
        "summary": "200 when every model is loaded, 503 while loading or after a model failed to load",
        "responses": {
          "200": { "description": "ready", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Health" } } } },
          "503": { "description": "not ready", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Health" } } } }
        }
      }
    },
    "/metrics": {
      "get": {
        "operationId": "metrics",
        "summary": "Prometheus text format: requests, queue depth, active sequences, prompt/generated tokens, time to first token and per-token latency histograms, KV cache bytes",
        "responses": { "200": { "description": "metrics", "content": { "text/plain": { "schema": { "type": "string" } } } } }
      }
    },
    "/v1/models": {
      "get": {
        "operationId": "listModels",
        "security": [ { "bearer": [] } ],
        "responses": {
          "200": { "description": "the served models", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ModelList" } } } },
          "401": { "$ref": "#/components/responses/Error" }
        }
      }
    },
    "/v1/models/{model}": {
      "get": {
        "operationId": "getModel",
        "security": [ { "bearer": [] } ],
        "parameters": [ { "name": "model", "in": "path", "required": true, "schema": { "type": "string" } } ],
        "responses": {
          "200": { "description": "the model", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Model" } } } },
          "401": { "$ref": "#/components/responses/Error" },
          "404": { "$ref": "#/components/responses/Error" }
        }
      }
    },
    "/v1/chat/completions": {
      "post": {
        "operationId": "createChatCompletion",
        "security": [ { "bearer": [] } ],
        "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ChatCompletionRequest" } } } },
        "responses": {
          "200": {
            "description": "the reply (application/json), or with stream: true a stream of `data: {chat.completion.chunk}` events ending in `data: [DONE]` (a request that ends early, e.g. at shutdown, ends with a `data: {\"error\": ...}` event)",
            "content": {
              "application/json": { "schema": { "$ref": "#/components/schemas/ChatCompletion" } },
              "text/event-stream": { "schema": { "$ref": "#/components/schemas/ServerSentEvent" } }
            }
          },
          "400": { "$ref": "#/components/responses/Error" },
          "401": { "$ref": "#/components/responses/Error" },
          "404": { "$ref": "#/components/responses/Error" },
          "413": { "$ref": "#/components/responses/Error" },
          "429": { "$ref": "#/components/responses/Error" },
          "503": { "$ref": "#/components/responses/Error" }
        }
      }
    },
    "/v1/completions": {
      "post": {
        "operationId": "createCompletion",
        "security": [ { "bearer": [] } ],
        "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/CompletionRequest" } } } },
        "responses": {
          "200": {
            "description": "the continuation (application/json), or with stream: true a stream of `data: {text_completion}` events ending in `data: [DONE]`",
            "content": {
              "application/json": { "schema": { "$ref": "#/components/schemas/Completion" } },
              "text/event-stream": { "schema": { "$ref": "#/components/schemas/ServerSentEvent" } }
            }
          },
          "400": { "$ref": "#/components/responses/Error" },
          "401": { "$ref": "#/components/responses/Error" },
          "404": { "$ref": "#/components/responses/Error" },
          "413": { "$ref": "#/components/responses/Error" },
          "429": { "$ref": "#/components/responses/Error" },
          "503": { "$ref": "#/components/responses/Error" }
        }
      }
    },
    "/v1/embeddings": {
      "post": {
        "operationId": "createEmbedding",
        "security": [ { "bearer": [] } ],
        "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/EmbeddingRequest" } } } },
        "responses": {
          "200": { "description": "one vector per input", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/EmbeddingList" } } } },
          "400": { "$ref": "#/components/responses/Error" },
          "401": { "$ref": "#/components/responses/Error" },
          "404": { "$ref": "#/components/responses/Error" },
          "413": { "$ref": "#/components/responses/Error" },
          "429": { "$ref": "#/components/responses/Error" },
          "503": { "$ref": "#/components/responses/Error" }
        }
      }
    }
  },
  "components": {
    "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "required when the server was started with --api-key or --api-key-file" } },
    "responses": {
      "Error": { "description": "an error in OpenAI's shape", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
    },
    "schemas": {
      "Error": {
        "type": "object", "required": [ "error" ],
        "properties": {
          "error": {
            "type": "object", "required": [ "message", "type", "param", "code" ],
            "properties": {
              "message": { "type": "string" }, "type": { "type": "string" },
              "param": { "type": "string", "nullable": true }, "code": { "type": "string", "nullable": true }
            }
          }
        }
      },
      "ServerSentEvent": {
        "type": "object", "required": [ "data" ],
        "description": "one event of the stream: `data` is a JSON chunk (or an error object), the last one the text [DONE]",
        "properties": { "data": { "type": "string" }, "event": { "type": "string" }, "id": { "type": "string" } }
      },
      "Health": {
        "type": "object", "required": [ "status" ],
        "properties": { "status": { "type": "string", "enum": [ "ok", "loading", "error" ] }, "errors": { "type": "array", "items": { "type": "string" } } }
      },
      "Model": {
        "type": "object", "required": [ "id", "object", "created", "owned_by" ],
        "properties": {
          "id": { "type": "string" }, "object": { "type": "string", "enum": [ "model" ] }, "created": { "type": "integer" },
          "owned_by": { "type": "string" }, "status": { "type": "string", "enum": [ "ready", "loading", "failed" ] },
          "context_length": { "type": "integer" }, "architecture": { "type": "string" }
        }
      },
      "ModelList": {
        "type": "object", "required": [ "object", "data" ],
        "properties": { "object": { "type": "string", "enum": [ "list" ] }, "data": { "type": "array", "items": { "$ref": "#/components/schemas/Model" } } }
      },
      "Stop": {
        "oneOf": [ { "type": "string" }, { "type": "array", "maxItems": 4, "items": { "type": "string" } } ], "nullable": true
      },
      "TextPart": {
        "type": "object", "required": [ "type", "text" ],
        "properties": { "type": { "type": "string", "enum": [ "text" ] }, "text": { "type": "string" } }
      },
      "Message": {
        "type": "object", "required": [ "role" ],
        "properties": {
          "role": { "type": "string", "enum": [ "system", "developer", "user", "assistant" ] },
          "content": { "oneOf": [ { "type": "string" }, { "type": "array", "items": { "$ref": "#/components/schemas/TextPart" } } ], "nullable": true },
          "name": { "type": "string", "nullable": true }
        }
      },
      "ResponseFormat": {
        "type": "object", "required": [ "type" ], "nullable": true,
        "properties": {
          "type": { "type": "string", "enum": [ "text", "json_object", "json_schema" ] },
          "json_schema": {
            "type": "object", "required": [ "name" ], "nullable": true,
            "properties": {
              "name": { "type": "string" }, "description": { "type": "string", "nullable": true },
              "schema": { "type": "object", "nullable": true, "description": "a JSON Schema (see the server's description for the keywords it enforces); null: any object" },
              "strict": { "type": "boolean", "nullable": true }
            }
          }
        }
      },
      "StreamOptions": { "type": "object", "nullable": true, "properties": { "include_usage": { "type": "boolean", "nullable": true } } },
      "GenerationParameters": {
        "type": "object", "description": "what chat completions and completions take alike",
        "properties": {
          "model": { "type": "string", "nullable": true, "description": "a served model's id or alias; default: the first" },
          "temperature": { "type": "number", "minimum": 0, "maximum": 2, "nullable": true },
          "top_p": { "type": "number", "minimum": 0, "maximum": 1, "nullable": true },
          "top_k": { "type": "integer", "minimum": 0, "maximum": 1000000, "nullable": true },
          "min_p": { "type": "number", "minimum": 0, "maximum": 1, "nullable": true },
          "repeat_penalty": { "type": "number", "minimum": 0.01, "maximum": 10, "nullable": true },
          "presence_penalty": { "type": "number", "minimum": -2, "maximum": 2, "nullable": true },
          "frequency_penalty": { "type": "number", "minimum": -2, "maximum": 2, "nullable": true },
          "seed": { "type": "integer", "format": "int64", "nullable": true },
          "stop": { "$ref": "#/components/schemas/Stop" },
          "stream": { "type": "boolean", "nullable": true },
          "stream_options": { "$ref": "#/components/schemas/StreamOptions" },
          "response_format": { "$ref": "#/components/schemas/ResponseFormat" },
          "ignore_eos": { "type": "boolean", "nullable": true },
          "user": { "type": "string", "nullable": true }
        }
      },
      "ChatCompletionRequest": {
        "allOf": [
          { "$ref": "#/components/schemas/GenerationParameters" },
          {
            "type": "object", "required": [ "messages" ],
            "properties": {
              "messages": { "type": "array", "minItems": 1, "items": { "$ref": "#/components/schemas/Message" } },
              "max_tokens": { "type": "integer", "minimum": 1, "maximum": "__MAX_TOKENS__", "nullable": true },
              "max_completion_tokens": { "type": "integer", "minimum": 1, "maximum": "__MAX_TOKENS__", "nullable": true, "description": "the same limit as max_tokens; when both are given they must be equal" },
              "logprobs": { "type": "boolean", "nullable": true },
              "top_logprobs": { "type": "integer", "minimum": 0, "maximum": 20, "nullable": true, "description": "used with logprobs: true" },
              "n": { "type": "integer", "minimum": 1, "maximum": 1, "nullable": true }
            }
          }
        ]
      },
      "TopLogprob": {
        "type": "object", "required": [ "token", "logprob", "bytes" ],
        "properties": { "token": { "type": "string" }, "logprob": { "type": "number" }, "bytes": { "type": "array", "items": { "type": "integer" } } }
      },
      "TokenLogprob": {
        "type": "object", "required": [ "token", "logprob", "bytes", "top_logprobs" ],
        "properties": {
          "token": { "type": "string" }, "logprob": { "type": "number" }, "bytes": { "type": "array", "items": { "type": "integer" } },
          "top_logprobs": { "type": "array", "items": { "$ref": "#/components/schemas/TopLogprob" } }
        }
      },
      "Usage": {
        "type": "object", "required": [ "prompt_tokens", "completion_tokens", "total_tokens" ],
        "properties": {
          "prompt_tokens": { "type": "integer" }, "completion_tokens": { "type": "integer" }, "total_tokens": { "type": "integer" },
          "prompt_tokens_details": { "type": "object", "properties": { "cached_tokens": { "type": "integer" } } }
        }
      },
      "ChatCompletion": {
        "type": "object", "required": [ "id", "object", "created", "model", "choices", "usage" ],
        "properties": {
          "id": { "type": "string" }, "object": { "type": "string", "enum": [ "chat.completion" ] }, "created": { "type": "integer" },
          "model": { "type": "string" }, "system_fingerprint": { "type": "string" },
          "choices": {
            "type": "array",
            "items": {
              "type": "object", "required": [ "index", "message", "logprobs", "finish_reason" ],
              "properties": {
                "index": { "type": "integer" },
                "message": {
                  "type": "object", "required": [ "role", "content" ],
                  "properties": { "role": { "type": "string", "enum": [ "assistant" ] }, "content": { "type": "string" } }
                },
                "logprobs": {
                  "type": "object", "nullable": true, "required": [ "content" ],
                  "properties": { "content": { "type": "array", "items": { "$ref": "#/components/schemas/TokenLogprob" } } }
                },
                "finish_reason": { "type": "string", "enum": [ "stop", "length" ] }
              }
            }
          },
          "usage": { "$ref": "#/components/schemas/Usage" }
        }
      },
      "CompletionRequest": {
        "allOf": [
          { "$ref": "#/components/schemas/GenerationParameters" },
          {
            "type": "object", "required": [ "prompt" ],
            "properties": {
              "prompt": {
                "oneOf": [
                  { "type": "string" },
                  { "type": "array", "minItems": 1, "maxItems": 1, "items": { "type": "string" } },
                  { "type": "array", "minItems": 1, "items": { "type": "integer", "minimum": 0 } }
                ]
              },
              "max_tokens": { "type": "integer", "minimum": 1, "maximum": "__MAX_TOKENS__", "nullable": true, "description": "default 16" },
              "logprobs": { "type": "integer", "minimum": 0, "maximum": 5, "nullable": true },
              "echo": { "type": "boolean", "nullable": true, "description": "true is refused (400)" },
              "suffix": { "type": "string", "nullable": true, "description": "a non-empty suffix is refused (400)" },
              "n": { "type": "integer", "minimum": 1, "maximum": 1, "nullable": true },
              "best_of": { "type": "integer", "minimum": 1, "maximum": 1, "nullable": true }
            }
          }
        ]
      },
      "Completion": {
        "type": "object", "required": [ "id", "object", "created", "model", "choices", "usage" ],
        "properties": {
          "id": { "type": "string" }, "object": { "type": "string", "enum": [ "text_completion" ] }, "created": { "type": "integer" },
          "model": { "type": "string" }, "system_fingerprint": { "type": "string" },
          "choices": {
            "type": "array",
            "items": {
              "type": "object", "required": [ "text", "index", "logprobs", "finish_reason" ],
              "properties": {
                "text": { "type": "string" }, "index": { "type": "integer" },
                "logprobs": {
                  "type": "object", "nullable": true,
                  "properties": {
                    "tokens": { "type": "array", "items": { "type": "string" } },
                    "token_logprobs": { "type": "array", "items": { "type": "number" } },
                    "top_logprobs": { "type": "array", "items": { "type": "object", "additionalProperties": { "type": "number" } } },
                    "text_offset": { "type": "array", "items": { "type": "integer" } }
                  }
                },
                "finish_reason": { "type": "string", "enum": [ "stop", "length" ] }
              }
            }
          },
          "usage": { "$ref": "#/components/schemas/Usage" }
        }
      },
      "EmbeddingRequest": {
        "type": "object", "required": [ "input" ],
        "properties": {
          "model": { "type": "string", "nullable": true },
          "input": {
            "oneOf": [
              { "type": "string", "minLength": 1 },
              { "type": "array", "minItems": 1, "maxItems": 256, "items": { "type": "string", "minLength": 1 } }
            ]
          },
          "encoding_format": { "type": "string", "enum": [ "float", "base64" ], "nullable": true },
          "dimensions": { "type": "integer", "minimum": 1, "nullable": true, "description": "must equal the model's width" },
          "user": { "type": "string", "nullable": true }
        }
      },
      "EmbeddingList": {
        "type": "object", "required": [ "object", "data", "model", "usage" ],
        "properties": {
          "object": { "type": "string", "enum": [ "list" ] }, "model": { "type": "string" },
          "data": {
            "type": "array",
            "items": {
              "type": "object", "required": [ "object", "index", "embedding" ],
              "properties": {
                "object": { "type": "string", "enum": [ "embedding" ] }, "index": { "type": "integer" },
                "embedding": { "oneOf": [ { "type": "array", "items": { "type": "number" } }, { "type": "string" } ] }
              }
            }
          },
          "usage": {
            "type": "object", "required": [ "prompt_tokens", "total_tokens" ],
            "properties": { "prompt_tokens": { "type": "integer" }, "total_tokens": { "type": "integer" } }
          }
        }
      }
    }
  }
}
"""#
}
