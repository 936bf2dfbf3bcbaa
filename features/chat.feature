Feature: Chat with the Project Manager agent and the models, through the CLI and the OpenAI-compatible API

  Scenario: A chat turn through the CLI
    Given the Project Manager agent is ready
    And a chat user with a personal API token
    When the chat user runs cynode chat -m "Say hello in one short sentence."
    Then the CLI prints the reply and exits 0
    And the chat user's thread holds the message and the reply

  Scenario: A chat turn through the OpenAI-compatible API with the official client
    Given the Project Manager agent is ready
    And a chat user with a personal API token
    When the chat user lists the models with the OpenAI client
    Then "cynodeai.pm" comes first in the model list
    When the chat user asks "cynodeai.pm" "Say hello." with the OpenAI client, streaming
    Then the streamed reply is not empty and ends with a finish reason
    And the chat user's thread holds the message and the reply

  Scenario: Another user cannot read my chat thread
    Given two chat users "amy" and "bob"
    When "amy" starts a chat thread and posts "my private plans"
    Then "bob" gets 404 for that chat thread and its messages
    And "amy" reads "my private plans" back from the thread

  Scenario: A secret pasted into chat is stored redacted
    Given the Project Manager agent is ready
    And a chat user with a personal API token
    When the chat user pastes a password and an API key into a chat completion
    Then reading the thread back shows SECRET_REDACTED instead of the secrets
    And the stored message lists the redaction kinds "api_key, password"
