ARG BASE
FROM ${BASE}
ENV PGDATA=/var/lib/postgresql/data
USER postgres
WORKDIR /var/lib/postgresql
STOPSIGNAL SIGINT
HEALTHCHECK --interval=1s --timeout=5s --retries=60 CMD ["pg_isready","-q","-U","postgres"]
ENTRYPOINT ["/usr/local/bin/pg-entrypoint"]
CMD []
