llama-server -m MODEL --host 127.0.0.1 --port PORT -np 4 -c 4096 -t 2 --no-webui --cache-ram 0
