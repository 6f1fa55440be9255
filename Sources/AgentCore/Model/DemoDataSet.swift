/// The data set the agent serves in offline mode when it has neither a DataFile nor data in its db, so that it can
/// be tried without a FeatBit server. Environment `demo/dev`; its secrets are printed at start.
public enum DemoDataSet {
    public static let serverSecret = "Gz6KDEEvKkyKUW0OK38cEQVZ4aW159H0yfCi98Oh2eAQ"
    public static let clientSecret = "akstfj8cXU6big8eLTxLIgVZ4aW159H0yfCi98Oh2eAQ"
    public static let json = #"""
{
  "eventType": "rp_full",
  "items": [
    {
      "envId": "5b1a9e55-7d5e-4c1f-9f0a-2f7c3a1d9e01",
      "secrets": [
        {
          "type": "server",
          "projectKey": "demo",
          "envId": "5b1a9e55-7d5e-4c1f-9f0a-2f7c3a1d9e01",
          "envKey": "dev",
          "value": "Gz6KDEEvKkyKUW0OK38cEQVZ4aW159H0yfCi98Oh2eAQ"
        },
        {
          "type": "client",
          "projectKey": "demo",
          "envId": "5b1a9e55-7d5e-4c1f-9f0a-2f7c3a1d9e01",
          "envKey": "dev",
          "value": "akstfj8cXU6big8eLTxLIgVZ4aW159H0yfCi98Oh2eAQ"
        }
      ],
      "featureFlags": [
        {
          "id": "d0000000-0000-4000-8000-000000000001",
          "envId": "5b1a9e55-7d5e-4c1f-9f0a-2f7c3a1d9e01",
          "name": "Welcome banner",
          "description": "Show the welcome banner",
          "key": "welcome-banner",
          "variationType": "boolean",
          "variations": [
            {
              "id": "a1f0c2d4-0001-4000-8000-000000000001",
              "name": "On",
              "value": "true"
            },
            {
              "id": "a1f0c2d4-0001-4000-8000-000000000002",
              "name": "Off",
              "value": "false"
            }
          ],
          "targetUsers": [],
          "rules": [],
          "isEnabled": true,
          "disabledVariationId": "a1f0c2d4-0001-4000-8000-000000000002",
          "fallthrough": {
            "dispatchKey": null,
            "includedInExpt": true,
            "variations": [
              {
                "id": "a1f0c2d4-0001-4000-8000-000000000001",
                "rollout": [
                  0,
                  1
                ],
                "exptRollout": 1
              }
            ]
          },
          "exptIncludeAllTargets": true,
          "tags": [
            "demo"
          ],
          "updatedAt": "2026-11-01T09:00:00.000Z",
          "isArchived": false
        },
        {
          "id": "d0000000-0000-4000-8000-000000000002",
          "envId": "5b1a9e55-7d5e-4c1f-9f0a-2f7c3a1d9e01",
          "name": "New checkout",
          "description": "25% rollout; beta testers always get it",
          "key": "new-checkout",
          "variationType": "boolean",
          "variations": [
            {
              "id": "b0000000-0000-4000-8000-000000000001",
              "name": "On",
              "value": "true"
            },
            {
              "id": "b0000000-0000-4000-8000-000000000002",
              "name": "Off",
              "value": "false"
            }
          ],
          "targetUsers": [],
          "rules": [
            {
              "id": "b0000000-0000-4000-8000-0000000000f1",
              "name": "Beta testers",
              "dispatchKey": null,
              "includedInExpt": false,
              "conditions": [
                {
                  "property": "User is in segment",
                  "op": null,
                  "value": "[\"c0ffee00-0000-4000-8000-000000000001\"]"
                }
              ],
              "variations": [
                {
                  "id": "b0000000-0000-4000-8000-000000000001",
                  "rollout": [
                    0,
                    1
                  ],
                  "exptRollout": 1
                }
              ]
            }
          ],
          "isEnabled": true,
          "disabledVariationId": "b0000000-0000-4000-8000-000000000002",
          "fallthrough": {
            "dispatchKey": "keyId",
            "includedInExpt": true,
            "variations": [
              {
                "id": "b0000000-0000-4000-8000-000000000001",
                "rollout": [
                  0,
                  0.25
                ],
                "exptRollout": 1
              },
              {
                "id": "b0000000-0000-4000-8000-000000000002",
                "rollout": [
                  0.25,
                  1
                ],
                "exptRollout": 1
              }
            ]
          },
          "exptIncludeAllTargets": true,
          "tags": [
            "demo"
          ],
          "updatedAt": "2026-11-01T09:00:00.000Z",
          "isArchived": false
        },
        {
          "id": "d0000000-0000-4000-8000-000000000003",
          "envId": "5b1a9e55-7d5e-4c1f-9f0a-2f7c3a1d9e01",
          "name": "Theme",
          "description": "",
          "key": "theme",
          "variationType": "string",
          "variations": [
            {
              "id": "e0000000-0000-4000-8000-000000000001",
              "name": "Light",
              "value": "light"
            },
            {
              "id": "e0000000-0000-4000-8000-000000000002",
              "name": "Dark",
              "value": "dark"
            }
          ],
          "targetUsers": [
            {
              "keyIds": [
                "alice"
              ],
              "variationId": "e0000000-0000-4000-8000-000000000002"
            }
          ],
          "rules": [
            {
              "id": "e0000000-0000-4000-8000-0000000000f1",
              "name": "Night owls",
              "dispatchKey": null,
              "includedInExpt": false,
              "conditions": [
                {
                  "property": "country",
                  "op": "IsOneOf",
                  "value": "[\"jp\", \"kr\"]"
                }
              ],
              "variations": [
                {
                  "id": "e0000000-0000-4000-8000-000000000002",
                  "rollout": [
                    0,
                    1
                  ],
                  "exptRollout": 1
                }
              ]
            }
          ],
          "isEnabled": true,
          "disabledVariationId": "e0000000-0000-4000-8000-000000000002",
          "fallthrough": {
            "dispatchKey": null,
            "includedInExpt": true,
            "variations": [
              {
                "id": "e0000000-0000-4000-8000-000000000001",
                "rollout": [
                  0,
                  1
                ],
                "exptRollout": 1
              }
            ]
          },
          "exptIncludeAllTargets": true,
          "tags": [
            "demo"
          ],
          "updatedAt": "2026-11-01T09:00:00.000Z",
          "isArchived": false
        },
        {
          "id": "d0000000-0000-4000-8000-000000000004",
          "envId": "5b1a9e55-7d5e-4c1f-9f0a-2f7c3a1d9e01",
          "name": "Max items",
          "description": "",
          "key": "max-items",
          "variationType": "number",
          "variations": [
            {
              "id": "f0000000-0000-4000-8000-000000000001",
              "name": "Ten",
              "value": "10"
            },
            {
              "id": "f0000000-0000-4000-8000-000000000002",
              "name": "Fifty",
              "value": "50"
            }
          ],
          "targetUsers": [],
          "rules": [],
          "isEnabled": true,
          "disabledVariationId": "f0000000-0000-4000-8000-000000000002",
          "fallthrough": {
            "dispatchKey": null,
            "includedInExpt": true,
            "variations": [
              {
                "id": "f0000000-0000-4000-8000-000000000001",
                "rollout": [
                  0,
                  1
                ],
                "exptRollout": 1
              }
            ]
          },
          "exptIncludeAllTargets": true,
          "tags": [
            "demo"
          ],
          "updatedAt": "2026-11-01T09:00:00.000Z",
          "isArchived": false
        }
      ],
      "segments": [
        {
          "id": "c0ffee00-0000-4000-8000-000000000001",
          "envId": "5b1a9e55-7d5e-4c1f-9f0a-2f7c3a1d9e01",
          "name": "beta-testers",
          "description": "Users who opted into beta features",
          "included": [
            "alice",
            "bob"
          ],
          "excluded": [
            "mallory"
          ],
          "rules": [
            {
              "id": "c0ffee00-0000-4000-8000-0000000000a1",
              "name": "Internal staff",
              "conditions": [
                {
                  "property": "email",
                  "op": "EndsWith",
                  "value": "@example.com"
                }
              ]
            }
          ],
          "updatedAt": "2026-11-01T09:00:00.000Z",
          "isArchived": false
        }
      ]
    }
  ]
}
"""#
}
