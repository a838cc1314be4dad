"""Constants shared by the serving tests (imported by name: conftest modules of other test dirs clash)."""
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
MODEL_NAME = "tiny-serve"
