Feature: Prompts become model answers, and sandboxes reach the model only through the proxy

  Background:
    Given a CLI user with a personal API token

  Scenario: A natural-language task is answered by the built-in model
    When I run the CLI "task create --wait" with the prompt "Tell me what model you are"
    Then the CLI succeeds with a non-empty answer
    And the task's job was answered by the model, not run as a shell command

  Scenario: A commands-mode job with inference calls the model through the proxy from inside the sandbox
    When I create an inference commands task with the commands "curl -s -m 90 --unix-socket /run/cynode/inference-proxy.sock http://proxy/api/generate -d '{\"model\":\"gemma3:270m\",\"prompt\":\"Hi\",\"stream\":false,\"options\":{\"num_predict\":4}}' | grep -c '\"response\"'; curl -s -m 30 $OLLAMA_BASE_URL/api/tags | grep -c gemma3; curl -s -o /dev/null -w '%{http_code}\n' --unix-socket /run/cynode/inference-proxy.sock -X DELETE http://proxy/api/delete -d '{\"model\":\"gemma3:270m\"}'; echo $INFERENCE_PROXY_URL"
    Then the task ends "completed" with exit code 0 and stdout "1\n1\n403\nhttp+unix://%2Frun%2Fcynode%2Finference-proxy.sock\n"

  Scenario: Without inference a job gets no proxy
    When I create a commands task with the commands "test -e /run/cynode/inference-proxy.sock && echo proxy || echo no-proxy; echo ${OLLAMA_BASE_URL:-unset}"
    Then the task ends "completed" with exit code 0 and stdout "no-proxy\nunset\n"

  Scenario: Readiness is 503 until a prompt can be answered, then 200
    Given a fresh system started with all roles
    Then its readiness is 503 at first with a reason
    And its readiness turns 200 once the model is warm, naming the PM model
