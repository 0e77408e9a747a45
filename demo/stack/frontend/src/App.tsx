import { useEffect, useState } from 'react';
import { useAuth0 } from '@auth0/auth0-react';
import { api, type Vehicle } from './api/client';

export default function App() {
  const { isAuthenticated, loginWithRedirect, getAccessTokenSilently } = useAuth0();
  const [vehicles, setVehicles] = useState<Vehicle[]>([]);

  useEffect(() => {
    if (!isAuthenticated) return;
    getAccessTokenSilently().then((token) => api(token).vehicles()).then(setVehicles);
  }, [isAuthenticated, getAccessTokenSilently]);

  if (!isAuthenticated) return <button onClick={() => loginWithRedirect()}>Log in</button>;

  return (
    <main>
      <h1>MotoVaultPro</h1>
      <ul>
        {vehicles.map((v) => (
          <li key={v.id}>{v.year} {v.make} {v.model}{v.nickname ? ` "${v.nickname}"` : ''}</li>
        ))}
      </ul>
    </main>
  );
}
