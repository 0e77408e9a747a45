ARG BASE
FROM ${BASE}
USER redis
WORKDIR /data
HEALTHCHECK --interval=1s --timeout=5s --retries=60 CMD ["sh","-c","[ \"$(redis-cli -h 127.0.0.1 ping)\" = PONG ]"]
ENTRYPOINT ["redis-server","--bind","127.0.0.1","--port","6379","--dir","/data"]
CMD ["--appendonly","yes"]
