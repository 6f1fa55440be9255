import Hummingbird
import NIOCore

/// `GET /openapi.yaml`: the HTTP API as an OpenAPI 3.0 document, embedded in the binary. It is `docs/openapi.yaml`
/// byte for byte (`OpenAPIDocumentTests` compares them): edit both together. CI checks the agent against it with
/// schemathesis (scripts/api-contract).
enum OpenAPIDocument {
    /// The document's bytes, made once.
    static let body = ByteBuffer(string: yaml)

    static func response() -> Response {
        Response(status: .ok, headers: [.contentType: "application/yaml"], body: .init(byteBuffer: body))
    }

    static let yaml = ##"""
openapi: 3.0.3
info:
  title: FeatBit Agent HTTP API
  version: "1"
  description: |
    The HTTP API of the FeatBit Agent (Swift): the FeatBit SDK endpoints, OpenFeature's OFREP, the admin API of
    agent-interface.md, health, metrics and the status page. Every answer carries `Access-Control-Allow-Origin: *`
    when the request has an `Origin`. Paths match case-insensitively. The agent serves this document at
    `GET /openapi.yaml`; `docs/openapi.yaml` is the same file, and a test keeps the two identical.
servers:
  - url: http://127.0.0.1:6100
components:
  securitySchemes:
    apiKey:
      type: apiKey
      in: header
      name: Authorization
      description: The agent's `ApiKey` (`rp-…`), the whole header value.
    sdkSecret:
      type: apiKey
      in: header
      name: Authorization
      description: An environment's server or client SDK secret, the whole header value (as the FeatBit SDKs send it).
    ofrepBearer:
      type: http
      scheme: bearer
      description: "An SDK secret as `Authorization: Bearer <secret>` (a bare `Authorization: <secret>` works too)."
    ofrepApiKey:
      type: apiKey
      in: header
      name: X-API-Key
      description: An SDK secret.
  parameters:
    timestamp:
      name: timestamp
      in: query
      required: false
      description: Unix milliseconds of the data the SDK holds; items updated after it are sent (absent or 0 → all).
      schema:
        type: integer
        format: int64
  responses:
    Unauthorized:
      description: Missing or wrong credential (empty body).
    TooManyRequests:
      description: >-
        This source address failed to authenticate too often (`AdminAuthFailureLimit`); the key is not looked at
        until `Retry-After` seconds have passed (empty body).
      headers:
        Retry-After:
          schema:
            type: integer
            minimum: 1
    InvalidTimestamp:
      description: "`timestamp` is not a 64-bit integer."
      content:
        text/plain:
          schema:
            type: string
    TooLarge:
      description: The request body is larger than this endpoint takes.
    OFREPError:
      description: "`{errorDetails}` (401 no or unknown secret, 413 body too large, 503 no data set yet)."
      content:
        application/json:
          schema:
            $ref: "#/components/schemas/OFREPErrorDetails"
  schemas:
    Error:
      type: object
      required: [error]
      properties:
        error:
          type: string
    DataSetRefusal:
      type: object
      required: [error]
      properties:
        error:
          type: string
        problems:
          description: Every problem of the data set, each with its JSON path (absent when the body is not JSON).
          type: array
          items:
            type: object
            required: [path, reason]
            properties:
              path:
                type: string
                nullable: true
              reason:
                type: string
    EndUser:
      type: object
      description: A FeatBit end user; member names match case-insensitively.
      required: [keyId]
      properties:
        keyId:
          type: string
        name:
          type: string
          nullable: true
        customizedProperties:
          type: array
          nullable: true
          items:
            type: object
            nullable: true
            properties:
              name:
                type: string
                nullable: true
              value:
                type: string
                nullable: true
    DataSet:
      type: object
      description: A data set in the bootstrap/backup format (spec §6.6), `rp_full` with one item per environment.
      required: [eventType, items]
      properties:
        eventType:
          type: string
        items:
          type: array
          items:
            type: object
            required: [envId]
            properties:
              envId:
                type: string
                format: uuid
              secrets:
                type: array
                items:
                  type: object
              featureFlags:
                type: array
                items:
                  type: object
              segments:
                type: array
                items:
                  type: object
    EvaluateRequest:
      type: object
      required: [user]
      properties:
        user:
          $ref: "#/components/schemas/EndUser"
        filter:
          type: object
          nullable: true
          properties:
            tagFilterMode:
              type: string
              nullable: true
            tags:
              type: array
              items:
                type: string
            keys:
              type: array
              items:
                type: string
            timestamp:
              type: integer
              format: int64
    EvaluateResult:
      type: array
      items:
        type: object
        required: [key, variation]
        properties:
          key:
            type: string
          variation:
            type: object
            required: [id, type, value, matchReason, sendToExperiment]
            properties:
              id:
                type: string
                nullable: true
              type:
                type: string
              value:
                type: string
                nullable: true
              matchReason:
                type: string
              sendToExperiment:
                type: boolean
    OFREPContextRequest:
      type: object
      properties:
        context:
          type: object
          properties:
            targetingKey:
              type: string
          additionalProperties: true
    OFREPSuccess:
      type: object
      required: [key, value, reason]
      properties:
        key:
          type: string
        value: {}
        reason:
          type: string
        variant:
          type: string
        metadata:
          type: object
    OFREPFailure:
      type: object
      required: [key, errorCode]
      properties:
        key:
          type: string
        errorCode:
          type: string
          enum: [PARSE_ERROR, TARGETING_KEY_MISSING, INVALID_CONTEXT, FLAG_NOT_FOUND, GENERAL, TYPE_MISMATCH]
        errorDetails:
          type: string
    OFREPBulkFailure:
      type: object
      required: [errorCode]
      properties:
        errorCode:
          type: string
        errorDetails:
          type: string
    OFREPErrorDetails:
      type: object
      required: [errorDetails]
      properties:
        errorDetails:
          type: string
    Status:
      type: object
      required: [serves, dataVersion, syncState, lastSyncedAt, reportedAt, connections, cluster]
      properties:
        serves:
          type: string
        dataVersion:
          type: integer
          format: int64
        syncState:
          type: string
          enum: [None, Starting, Stable, Interrupted, Stopped]
        lastSyncedAt:
          type: string
          nullable: true
        reportedAt:
          type: string
        mode:
          type: string
          enum: [auto, manual, offline]
        readiness:
          type: string
          enum: [Healthy, Degraded, Unhealthy]
        sequence:
          type: integer
        connections:
          type: object
          required: [server, client]
          properties:
            server:
              type: integer
            client:
              type: integer
        upstream:
          type: object
        insights:
          type: object
        cluster:
          type: object
          required: [nodeId, role, term, leaderId, peers]
          properties:
            nodeId:
              type: string
            role:
              type: string
              enum: [leader, follower, candidate, witness, standalone]
            term:
              type: integer
            leaderId:
              type: string
              nullable: true
            peers:
              type: array
              items:
                type: object
        problems:
          type: object
          additionalProperties:
            type: string
paths:
  /streaming:
    get:
      summary: The FeatBit SDK protocol over a WebSocket (spec §1, §2).
      description: |
        A WebSocket upgrade (`Connection: Upgrade`, `Upgrade: websocket`). The handshake's query is checked after the
        upgrade: a bad one closes the socket with 4003, a request before any data set with 1011. A request that is
        not a WebSocket upgrade is not served here (404).
      parameters:
        - name: type
          in: query
          required: true
          schema:
            type: string
            enum: [server, client]
        - name: token
          in: query
          required: true
          description: The SDK's streaming token (its secret and a timestamp, spec §1.3).
          schema:
            type: string
        - name: version
          in: query
          required: false
          schema:
            type: string
            enum: ["1", "2"]
      responses:
        "101":
          description: Switching to the WebSocket protocol.
        "404":
          description: Not a WebSocket upgrade.
  /api/public/sdk/server/latest-all:
    get:
      summary: A server SDK's data over HTTP (polling).
      security:
        - sdkSecret: []
      parameters:
        - $ref: "#/components/parameters/timestamp"
      responses:
        "200":
          description: |
            `application/json`: the `data-sync` message (spec §2.4) with the environment's flags and segments updated
            after `timestamp`. An empty body, without `Content-Type`, when `timestamp` > 0 and nothing changed since,
            or the secret's environment is not held (spec §6.2). OpenAPI 3.0 cannot describe a body that may be
            absent, so the JSON is described here only.
        "400":
          $ref: "#/components/responses/InvalidTimestamp"
        "401":
          $ref: "#/components/responses/Unauthorized"
  /api/public/sdk/client/latest-all:
    post:
      summary: A client SDK's evaluated flags for the posted user.
      security:
        - sdkSecret: []
      parameters:
        - $ref: "#/components/parameters/timestamp"
      requestBody:
        required: true
        content:
          application/json:
            schema:
              $ref: "#/components/schemas/EndUser"
      responses:
        "200":
          description: |
            `application/json`: the `data-sync` message with the user's evaluated flags (spec §2.4). An empty body,
            without `Content-Type`, when `timestamp` is not 0 and no flag changed since (spec §6.2).
        "400":
          description: "`timestamp` is not an integer (text), the body is not JSON (`{error}`) or not an end user (text)."
          content:
            text/plain:
              schema:
                type: string
            application/json:
              schema:
                $ref: "#/components/schemas/Error"
        "401":
          $ref: "#/components/responses/Unauthorized"
        "413":
          $ref: "#/components/responses/TooLarge"
  /api/public/featureflag/evaluate:
    post:
      summary: Evaluates the environment's flags for a user, with tag and key filters (spec §6.8).
      security:
        - sdkSecret: []
      requestBody:
        required: true
        content:
          application/json:
            schema:
              $ref: "#/components/schemas/EvaluateRequest"
      responses:
        "200":
          description: One result per flag the filter accepts, in ascending `updatedAt` order.
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/EvaluateResult"
        "400":
          description: Not a JSON object, no valid user, or an unknown `tagFilterMode`.
          content:
            text/plain:
              schema:
                type: string
        "401":
          $ref: "#/components/responses/Unauthorized"
        "413":
          $ref: "#/components/responses/TooLarge"
  /api/public/insight/track:
    post:
      summary: SDK usage events (flag evaluations, custom events), forwarded or kept as `InsightsMode` says.
      description: Always answered at once; a body that is not an insight array is counted as dropped.
      security:
        - sdkSecret: []
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: array
              items:
                type: object
      responses:
        "200":
          description: Accepted (empty body).
        "401":
          $ref: "#/components/responses/Unauthorized"
        "413":
          $ref: "#/components/responses/TooLarge"
  /ofrep/v1/evaluate/flags/{key}:
    post:
      summary: OFREP single-flag evaluation.
      security:
        - ofrepBearer: []
        - ofrepApiKey: []
      parameters:
        - name: key
          in: path
          required: true
          description: The flag's key.
          example: welcome-banner
          schema:
            type: string
      requestBody:
        required: true
        content:
          application/json:
            schema:
              $ref: "#/components/schemas/OFREPContextRequest"
      responses:
        "200":
          description: The flag's value for the context.
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/OFREPSuccess"
        "400":
          description: A bad body or context, or FeatBit serves no variation.
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/OFREPFailure"
        "401":
          $ref: "#/components/responses/OFREPError"
        "404":
          description: No flag with this key (or it is archived).
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/OFREPFailure"
        "413":
          $ref: "#/components/responses/OFREPError"
        "503":
          $ref: "#/components/responses/OFREPError"
  /ofrep/v1/evaluate/flags:
    post:
      summary: OFREP bulk evaluation of every flag of the environment.
      security:
        - ofrepBearer: []
        - ofrepApiKey: []
      parameters:
        - name: If-None-Match
          in: header
          required: false
          schema:
            type: string
      requestBody:
        required: true
        content:
          application/json:
            schema:
              $ref: "#/components/schemas/OFREPContextRequest"
      responses:
        "200":
          description: Every flag that is not archived, each a success or a failure object.
          headers:
            ETag:
              schema:
                type: string
          content:
            application/json:
              schema:
                type: object
                required: [flags]
                properties:
                  flags:
                    type: array
                    items:
                      type: object
        "304":
          description: "`If-None-Match` matches this context's entity tag."
        "400":
          description: A bad body or context.
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/OFREPBulkFailure"
        "401":
          $ref: "#/components/responses/OFREPError"
        "413":
          $ref: "#/components/responses/OFREPError"
        "503":
          $ref: "#/components/responses/OFREPError"
  /api/public/proxy/status:
    get: &adminStatus
      summary: The agent's status (agent-interface.md).
      security:
        - apiKey: []
      responses:
        "200":
          description: Status.
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/Status"
        "401":
          $ref: "#/components/responses/Unauthorized"
        "429":
          $ref: "#/components/responses/TooManyRequests"
  /api/proxy/status:
    # The same operation as /api/public/proxy/status (a YAML alias).
    get: *adminStatus
  /api/public/proxy/backup:
    get: &adminBackup
      summary: The data set held, in the bootstrap format.
      security:
        - apiKey: []
      responses:
        "200":
          description: The data set.
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/DataSet"
        "401":
          $ref: "#/components/responses/Unauthorized"
        "429":
          $ref: "#/components/responses/TooManyRequests"
  /api/proxy/backup:
    # The same operation as /api/public/proxy/backup (a YAML alias).
    get: *adminBackup
  /api/public/proxy/bootstrap:
    post: &adminBootstrap
      summary: Replaces the data set (in a mesh, on every node).
      security:
        - apiKey: []
      requestBody:
        required: true
        content:
          application/json:
            schema:
              $ref: "#/components/schemas/DataSet"
      responses:
        "200":
          description: Applied.
          content:
            application/json:
              schema:
                type: object
                required: [serves, dataVersion]
                properties:
                  serves:
                    type: string
                  dataVersion:
                    type: integer
                    format: int64
        "400":
          description: Not a valid data set (nothing of it applied), or a body that could not be read.
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/DataSetRefusal"
        "401":
          $ref: "#/components/responses/Unauthorized"
        "429":
          $ref: "#/components/responses/TooManyRequests"
        "413":
          description: The body is larger than the bootstrap limit (64 MiB).
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/Error"
        "503":
          description: Not applied (in a mesh, no leader could apply it).
          content:
            application/json:
              schema:
                $ref: "#/components/schemas/Error"
  /api/proxy/bootstrap:
    # The same operation as /api/public/proxy/bootstrap (a YAML alias).
    post: *adminBootstrap
  /health/liveness:
    get:
      summary: The process answers.
      responses:
        "200":
          description: "`Healthy`."
          content:
            text/plain:
              schema:
                type: string
                enum: [Healthy]
  /health/readiness:
    get:
      summary: Whether this node serves data in sync.
      responses:
        "200":
          description: "`Healthy` (data held and in sync) or `Degraded` (serving data that may be stale)."
          content:
            text/plain:
              schema:
                type: string
                enum: [Healthy, Degraded]
        "503":
          description: "`Unhealthy`: no data set yet."
          content:
            text/plain:
              schema:
                type: string
                enum: [Unhealthy]
  /metrics:
    get:
      summary: Prometheus metrics.
      responses:
        "200":
          description: Prometheus text format 0.0.4.
          content:
            text/plain:
              schema:
                type: string
  /ui:
    get:
      summary: The mesh status page (it asks for the ApiKey and reads the status API).
      responses:
        "200":
          description: One self-contained HTML page.
          content:
            text/html:
              schema:
                type: string
  /openapi.yaml:
    get:
      summary: This document.
      responses:
        "200":
          description: OpenAPI 3.0 in YAML.
          content:
            application/yaml:
              schema:
                type: object
                required: [openapi, info, paths]

"""##
}
