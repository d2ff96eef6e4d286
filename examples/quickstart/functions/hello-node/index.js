// Quickstart handler: an ordinary AWS Lambda Node.js handler, unchanged.
exports.handler = async (event, context) => {
  const name = (event && event.name) || 'world';
  console.log(`greeting ${name}`);
  return {
    message: `${process.env.GREETING || 'Hello'}, ${name}!`,
    requestId: context.awsRequestId,
    function: context.functionName,
  };
};
