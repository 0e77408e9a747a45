ARG BASE
FROM ${BASE}
USER app
WORKDIR /srv
ENTRYPOINT ["/usr/local/bin/idle"]
CMD []
