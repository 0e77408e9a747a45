ARG BASE
FROM ${BASE}
USER redis
WORKDIR /data
HEALTHCHECK --interval=1s --timeout=5s --retries=60 CMD ["node","-e","require('http').get('http://127.0.0.1:4568/',r=>process.exit(r.statusCode<500?0:1)).on('error',()=>process.exit(1))"]
ENTRYPOINT ["s3rver-run","-d","/data","-a","127.0.0.1","-p","4568"]
CMD []
